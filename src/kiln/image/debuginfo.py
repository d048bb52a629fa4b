"""The wheels' shared libraries without their debug information, made once on the host for both backends.

Some wheels ship shared libraries with DWARF debug sections: uvloop's event loop is 13.6 MB
with them and 1.9 MB without; PyYAML's, httptools' and wcwidth's carry a few MB more. Serving
never reads them (a debugger would, or a crash report with source lines). kiln runs the
host's ``strip --strip-debug`` (GNU binutils) on each ELF member of a wheel that has
``.debug_*`` sections and keeps the result in its cache, keyed by the member's sha256 and the
strip's version; symbols stay, so backtraces still name functions.

The environment's finishing step (``kiln.image.finish``) then replaces each installed file
whose sha256 is the original's with the stripped copy, in the Docker backend's env stage and
in the OCI backend's staged layer alike. Without ``strip`` on the host (or for a library of an
architecture it does not know, such as arm64 on an x86-64 host) the library stays as it is,
and the log says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from kiln.env.cache import atomic_write, cache_root, sha256_file

log = logging.getLogger(__name__)

ELF_MAGIC = b"\x7fELF"
CACHE_DIR = "stripped"
SCAN_VERSION = 1
"""Raised when what a wheel's scan records changes (the per-wheel records in the cache)."""


@dataclass(frozen=True)
class Stripped:
    """One installed file's replacement: its path in site-packages, its sha256 as the wheel has it,
    and the stripped copy on the host."""

    path: str
    original_sha256: str
    stripped: Path


@cache
def strip_tool() -> tuple[str, str] | None:
    """The host's ``strip`` and the first line of its ``--version`` (it decides the bytes); None if absent."""
    found = shutil.which("strip")
    if found is None:
        return None
    try:
        done = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = done.stdout.splitlines()[0].strip() if done.returncode == 0 and done.stdout else ""
    return (found, version) if version else None


def strip_wheels(wheels: Iterable[Path], *, cache_dir: Path | None = None) -> tuple[Stripped, ...]:
    """The stripped copies of every library in ``wheels`` that has debug sections (sorted by path)."""
    tool = strip_tool()
    if tool is None:
        log.info("no GNU strip on this host (binutils): shared libraries keep their debug information")
        return ()
    root = (cache_dir or cache_root()) / CACHE_DIR
    found: dict[tuple[str, str], Stripped] = {}
    for wheel in wheels:
        try:
            items = _wheel(wheel, tool, root)
        except (zipfile.BadZipFile, OSError) as exc:  # the install names a broken wheel better
            log.debug("not stripping %s: %s", wheel, exc)
            continue
        for item in items:
            found[(item.path, item.original_sha256)] = item
    return tuple(sorted(found.values(), key=lambda item: (item.path, item.original_sha256)))


def _wheel(wheel: Path, tool: tuple[str, str], root: Path) -> list[Stripped]:
    """One wheel's stripped libraries, from the cache's record of it when there is one."""
    key = hashlib.sha256(f"{SCAN_VERSION}\0{tool[1]}\0{sha256_file(wheel)}".encode()).hexdigest()
    record = root / "wheels" / f"{key}.json"
    if record.is_file():
        rows = json.loads(record.read_text(encoding="utf-8"))
        items = [Stripped(path, sha, root / "files" / name) for path, sha, name in rows]
        if all(item.stripped.is_file() for item in items):
            return items
    items = []
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir() or ".data/" in info.filename or info.file_size < 4:
                continue
            with archive.open(info) as member:
                if member.read(4) != ELF_MAGIC:
                    continue
            data = archive.read(info)
            if not _has_debug_sections(data):
                continue
            stripped = _strip(data, tool[0], root / "files")
            if stripped is not None:
                items.append(Stripped(info.filename, hashlib.sha256(data).hexdigest(), stripped))
            else:
                log.info("strip could not read %s in %s: it stays as it is", info.filename, wheel)
    atomic_write(record, json.dumps([[i.path, i.original_sha256, i.stripped.name] for i in items]).encode())
    return items


def _has_debug_sections(data: bytes) -> bool:
    try:
        elf = ELFFile(io.BytesIO(data))
        return any(section.name.startswith((".debug_", ".zdebug_")) for section in elf.iter_sections())
    except (ELFError, ValueError, KeyError, AssertionError):
        return False


def _strip(data: bytes, strip: str, files: Path) -> Path | None:
    """``strip --strip-debug`` of ``data`` into the cache (named by its own sha256); None if strip failed."""
    files.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=files, prefix=".strip-") as work:
        source, target = Path(work) / "in", Path(work) / "out"
        source.write_bytes(data)
        done = subprocess.run(
            [strip, "--strip-debug", "-o", str(target), str(source)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0 or not target.is_file():
            return None
        final = files / sha256_file(target)
        if not final.is_file():
            target.replace(final)
        return final
