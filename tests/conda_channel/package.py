"""Write a real conda package (``.tar.bz2``) from a staged directory, byte for byte reproducible.

Two formats, as conda-forge ships both: ``.tar.bz2`` (one bzip2 tar) and ``.conda`` (a zip of
``metadata.json``, ``info-*.tar.zst`` and ``pkg-*.tar.zst``; much faster to extract). The
archive holds the files and ``info/``: ``index.json``, ``paths.json`` (with the
``prefix_placeholder`` and ``file_mode`` of every file that contains the build prefix),
``files``, ``has_prefix`` (the older form of the same facts) and, for noarch python
packages, ``link.json``. A file with a NUL byte is a ``binary`` placeholder file, others
``text``, which is the rule conda-build uses.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import os
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import zstandard

TIMESTAMP_MS = 1_700_000_000_000
"""One fixed build time for every package: the same inputs give the same archive bytes."""
_MTIME = TIMESTAMP_MS // 1000


@dataclass(frozen=True)
class PackageMeta:
    """The ``info/index.json`` facts of one package."""

    name: str
    version: str
    build: str
    subdir: str
    """``linux-64`` or ``noarch``."""
    depends: tuple[str, ...] = ()
    noarch_python: bool = False
    entry_points: tuple[str, ...] = ()
    """``name = module:function`` console scripts (noarch python packages)."""
    license: str = "unknown"
    extra: dict[str, Any] = field(default_factory=dict)
    format: Literal[".tar.bz2", ".conda"] = ".tar.bz2"

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def filename(self) -> str:
        return self.stem + self.format

    def index_json(self) -> dict[str, Any]:
        arch, platform = (None, None) if self.subdir == "noarch" else ("x86_64", "linux")
        index: dict[str, Any] = {
            "arch": arch,
            "build": self.build,
            "build_number": 0,
            "depends": list(self.depends),
            "license": self.license,
            "name": self.name,
            "platform": platform,
            "subdir": self.subdir,
            "timestamp": TIMESTAMP_MS,
            "version": self.version,
            **self.extra,
        }
        if self.noarch_python:
            index["noarch"] = "python"
        return index


def write_package(staged: Path, meta: PackageMeta, out_dir: Path, *, placeholder: str | None) -> Path:
    """Pack ``staged`` (the files as installed under ``placeholder``) into ``out_dir/<subdir>/``."""
    entries = _scan(staged, placeholder)
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for relative, kind, _digest, _size, _mode in entries:
        members.append(_member(staged, relative, kind))
    for name, data in _info_files(meta, entries, placeholder).items():
        info = tarfile.TarInfo(f"info/{name}")
        info.size = len(data)
        members.append((_normalise(info, 0o644), data))
    members.sort(key=lambda item: (not item[0].name.startswith("info/"), item[0].name))
    target = out_dir / meta.subdir / meta.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    if meta.format == ".conda":
        temporary.write_bytes(_conda_archive(meta, members))
    else:
        temporary.write_bytes(bz2.compress(_tar(members), compresslevel=5))
    os.replace(temporary, target)
    return target


def _tar(members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def _conda_archive(meta: PackageMeta, members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """The ``.conda`` format: an uncompressed zip of two zstd-compressed tars and a version file."""
    compressor = zstandard.ZstdCompressor(level=10)
    info = [member for member in members if member[0].name.startswith("info/")]
    files = [member for member in members if not member[0].name.startswith("info/")]
    parts = {
        "metadata.json": json.dumps({"conda_pkg_format_version": 2}).encode(),
        f"pkg-{meta.stem}.tar.zst": compressor.compress(_tar(files)),
        f"info-{meta.stem}.tar.zst": compressor.compress(_tar(info)),
    }
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in parts.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20)), data)
    return raw.getvalue()


_Entry = tuple[str, str, str, int, str | None]
"""(relative path, 'hardlink' | 'softlink', sha256, size, 'text' | 'binary' | None)."""


def _scan(staged: Path, placeholder: str | None) -> list[_Entry]:
    entries: list[_Entry] = []
    needle = placeholder.encode() if placeholder else None
    for path in sorted(staged.rglob("*")):
        relative = path.relative_to(staged).as_posix()
        if path.is_symlink():
            target = path.resolve()
            data = target.read_bytes() if target.is_file() else os.readlink(path).encode()
            entries.append((relative, "softlink", hashlib.sha256(data).hexdigest(), len(data), None))
        elif path.is_file():
            data = path.read_bytes()
            mode = None
            if needle and needle in data:
                mode = "binary" if b"\0" in data else "text"
            entries.append((relative, "hardlink", hashlib.sha256(data).hexdigest(), len(data), mode))
    return entries


def _member(staged: Path, relative: str, kind: str) -> tuple[tarfile.TarInfo, bytes | None]:
    path = staged / relative
    info = tarfile.TarInfo(relative)
    if kind == "softlink":
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        return _normalise(info, 0o777), None
    data = path.read_bytes()
    info.size = len(data)
    executable = os.stat(path).st_mode & 0o111
    return _normalise(info, 0o755 if executable else 0o644), data


def _normalise(info: tarfile.TarInfo, mode: int) -> tarfile.TarInfo:
    info.mode = mode
    info.mtime = _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _info_files(meta: PackageMeta, entries: Sequence[_Entry], placeholder: str | None) -> dict[str, bytes]:
    paths = []
    has_prefix = []
    for relative, kind, digest, size, mode in entries:
        entry: dict[str, Any] = {
            "_path": relative,
            "path_type": kind,
            "sha256": digest,
            "size_in_bytes": size,
        }
        if mode is not None and placeholder is not None:
            entry["file_mode"] = mode
            entry["prefix_placeholder"] = placeholder
            has_prefix.append(f"{placeholder} {mode} {relative}")
        paths.append(entry)
    files = {
        "index.json": _json(meta.index_json()),
        "paths.json": _json({"paths": paths, "paths_version": 1}),
        "files": "".join(f"{entry[0]}\n" for entry in entries).encode(),
    }
    if has_prefix:
        files["has_prefix"] = "".join(f"{line}\n" for line in has_prefix).encode()
    if meta.noarch_python:
        link = {
            "noarch": {"type": "python", "entry_points": list(meta.entry_points)},
            "package_metadata_version": 1,
        }
        files["link.json"] = _json(link)
    return files


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
