"""Which shared libraries the ELF files in a set of wheels need that nothing in the image provides.

A library is provided when a file of that name (or an ELF with that DT_SONAME) is in the
same wheel (auditwheel's ``<pkg>.libs/``, or any other file), in another wheel of the
environment, in the base image's library directories, or is one of glibc's own libraries,
which every manylinux wheel may assume. Each wheel's facts are cached by its sha256, so a
second build of the same environment reads no ELF.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kiln.env.cache import atomic_write, sha256_file
from kiln.env.native.elf import ELF_MAGIC, MACHINES, ElfLinks, read_links
from kiln.env.spec import TargetPlatform
from kiln.errors import DependencyError

logger = logging.getLogger(__name__)

_FORMAT = 1
_SPOOL = 64 * 1024 * 1024
# glibc's libraries: the manylinux tags promise them on every target, so no wheel vendors them.
GLIBC_SONAMES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libmvec.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "libresolv.so.2",
        "libanl.so.1",
        "libBrokenLocale.so.1",
        "libthread_db.so.1",
        "libnss_files.so.2",
        "libnss_dns.so.2",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    }
)
_TRIPLETS = {"linux/amd64": "x86_64-linux-gnu", "linux/arm64": "aarch64-linux-gnu"}


@dataclass(frozen=True)
class WheelLinks:
    """What one wheel's ELF files need, and the library names the wheel itself provides."""

    wheel: str
    provides: frozenset[str]
    needs: tuple[tuple[str, str, str], ...]
    """``(member path, machine, needed soname)`` for every DT_NEEDED entry of every ELF member."""


@dataclass(frozen=True)
class Unprovided:
    """A DT_NEEDED entry nothing provides: the library, the wheel, the ELF member that needs it."""

    soname: str
    wheel: str
    needed_by: str


def library_dirs(target: TargetPlatform) -> frozenset[str]:
    """The directories (no leading ``/``) the dynamic linker searches by default on a Debian ``target``."""
    triplet = _TRIPLETS.get(target.os_arch, "")
    plain = {"lib", "lib64", "usr/lib", "usr/lib64", "usr/local/lib"}
    return frozenset(plain | {f"{d}/{triplet}" for d in ("lib", "usr/lib", "usr/local/lib") if triplet})


def base_sonames(base_files: Iterable[str], target: TargetPlatform) -> frozenset[str]:
    """Library names the base provides: files in its linker directories, and bare names as given."""
    dirs = library_dirs(target)
    names = set(GLIBC_SONAMES)
    for raw in base_files:
        path = PurePosixPath(raw.strip().lstrip("./").lstrip("/"))
        if len(path.parts) == 1 or str(path.parent) in dirs:
            names.add(path.name)
    return frozenset(names)


def unprovided_libraries(
    wheels: Sequence[Path], *, base_files: Iterable[str], target: TargetPlatform, cache_dir: Path
) -> tuple[Unprovided, ...]:
    """Every DT_NEEDED entry of the wheels' ELF files (for ``target``'s machine) that no wheel, the
    base (``base_files``: paths of files in the base image, or bare sonames) nor glibc provides."""
    machine = MACHINES.get(target.os_arch)
    links = [wheel_links(wheel, cache_dir=cache_dir) for wheel in sorted(wheels)]
    provided = base_sonames(base_files, target).union(*(link.provides for link in links))
    found: dict[tuple[str, str], Unprovided] = {}
    for link in links:
        for member, elf_machine, soname in link.needs:
            if elf_machine == machine and "/" not in soname and soname not in provided:
                found.setdefault((soname, link.wheel), Unprovided(soname, link.wheel, member))
    return tuple(sorted(found.values(), key=lambda item: (item.soname, item.wheel)))


def wheel_links(wheel: Path, *, cache_dir: Path) -> WheelLinks:
    """The linking facts of ``wheel``, from kiln's cache when this exact file was read before."""
    cached = cache_dir / "native" / "wheels" / f"{sha256_file(wheel)}.json"
    if cached.is_file():
        data = json.loads(cached.read_text(encoding="utf-8"))
        if data.get("format") == _FORMAT:
            return WheelLinks(
                wheel.name, frozenset(data["provides"]), tuple((m, a, s) for m, a, s in data["needs"])
            )
    links = _read_wheel(wheel, cache_dir / "tmp")
    record = {"format": _FORMAT, "provides": sorted(links.provides), "needs": [list(n) for n in links.needs]}
    atomic_write(cached, json.dumps(record, sort_keys=True).encode("utf-8"))
    return links


def _read_wheel(wheel: Path, scratch: Path) -> WheelLinks:
    provides: set[str] = set()
    needs: list[tuple[str, str, str]] = []
    try:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                name = PurePosixPath(info.filename).name
                if ".so" in name:
                    provides.add(name)
                links = _elf_links(archive, info, scratch)
                if links is not None:
                    if links.soname:
                        provides.add(links.soname)
                    needs.extend((info.filename, links.machine, soname) for soname in links.needed)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DependencyError(
            f"cannot read the wheel {wheel.name!r} to check its native libraries: {exc}"
        ) from exc
    logger.debug("%s: %d ELF dependencies", wheel.name, len(needs))
    return WheelLinks(wheel.name, frozenset(provides), tuple(needs))


def _elf_links(archive: zipfile.ZipFile, info: zipfile.ZipInfo, scratch: Path) -> ElfLinks | None:
    if info.is_dir() or info.file_size < 64:
        return None
    with archive.open(info) as member:
        if member.read(4) != ELF_MAGIC:
            return None
    # pyelftools seeks to the section headers at the end; a zip member only seeks forward cheaply.
    scratch.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as member, tempfile.SpooledTemporaryFile(_SPOOL, dir=str(scratch)) as spool:
        shutil.copyfileobj(member, spool)
        spool.seek(0)
        return read_links(spool)  # type: ignore[arg-type]
