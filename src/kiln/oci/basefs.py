"""A base image's merged filesystem read from its layer tars, without running it (a ``BaseFiles``).

The layers are read once per base (keyed by the config digest, which names the layers'
``diff_ids``): every tar header goes into an index, whiteouts (``.wh.NAME``) and opaque
directories (``.wh..wh..opq``) applied layer by layer as an overlay filesystem would, and
the few small files kiln reads (``/etc/os-release``, ``/etc/passwd``, dpkg's status, apt's
sources) are kept next to it under ``~/.cache/kiln/oci/bases/<hex>/``. Later builds on
the same base read that cache and never open a layer. A file outside what was kept is
read from its layer again, through the opener the base's source gave (for a registry
base that means streaming that layer once more).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from kiln.oci.types import BaseFiles, FileEntry

log = logging.getLogger(__name__)

INDEX_VERSION = 2
KEEP_MAX_SIZE = 8 << 20
_KEEP_PREFIXES = ("etc/", "usr/share/keyrings/", "var/lib/dpkg/status.d/")
_KEEP_FILES = ("usr/lib/os-release", "var/lib/dpkg/status", "var/lib/apt/extended_states")
_MAX_LINKS = 40

LayerOpener = Callable[[int], AbstractContextManager[BinaryIO]]
"""Opens layer ``i`` (base first) as a stream of its tar, gzip or not."""


def kept(path: str, size: int) -> bool:
    """Whether indexing keeps this file's bytes (``path`` relative, no leading slash)."""
    if size > KEEP_MAX_SIZE:
        return False
    return path in _KEEP_FILES or (path.startswith(_KEEP_PREFIXES) and size <= 1 << 20)


@dataclass(frozen=True)
class Indexed:
    """An index row: a FileEntry and the layer that last wrote the path."""

    entry: FileEntry
    layer: int
    size: int = 0


class LayerFiles:
    """``BaseFiles`` over an index of a base's layers; reads kept files from the cache directory."""

    def __init__(self, index: dict[str, Indexed], files: Path, open_layer: LayerOpener | None) -> None:
        self._index = index
        self._files = files
        self._open_layer = open_layer
        self._children: dict[str, list[str]] | None = None

    # --- BaseFiles --------------------------------------------------------------------------
    def entry(self, path: str) -> FileEntry | None:
        resolved = self._resolve(path, follow_last=False)
        found = self._index.get(resolved) if resolved is not None else None
        return found.entry if found is not None else None

    def read(self, path: str) -> bytes | None:
        resolved = self._resolve(path, follow_last=True)
        found = self._index.get(resolved) if resolved is not None else None
        if found is not None and found.entry.kind == "hardlink" and found.entry.target:
            resolved = _absolute(found.entry.target)
            found = self._index.get(resolved)
        if found is None or found.entry.kind != "file" or resolved is None:
            return None
        cached = self._files / resolved.lstrip("/")
        if kept(resolved.lstrip("/"), found.size):
            try:
                return cached.read_bytes()
            except OSError:
                pass
        return self._read_from_layer(resolved, found.layer)

    # --- more than the protocol, for the probe -----------------------------------------
    def listdir(self, path: str) -> list[str]:
        """Names in directory ``path`` (symlinks on the way followed), sorted; [] when none."""
        resolved = self._resolve(path, follow_last=True)
        if resolved is None:
            return []
        if self._children is None:
            children: dict[str, list[str]] = {}
            for name in self._index:
                parent, base = posixpath.split(name)
                children.setdefault(parent, []).append(base)
            self._children = children
        return sorted(self._children.get(resolved, []))

    def realpath(self, path: str) -> str | None:
        """``path`` with every symlink followed, or None when it leads nowhere."""
        resolved = self._resolve(path, follow_last=True)
        return resolved if resolved is not None and resolved in self._index else None

    def __len__(self) -> int:
        return len(self._index)

    def _resolve(self, path: str, *, follow_last: bool) -> str | None:
        parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
        current = "/"
        hops = 0
        while parts:
            name = parts.pop(0)
            candidate = posixpath.join(current, name)
            found = self._index.get(candidate)
            last = not parts
            if found is not None and found.entry.kind == "symlink" and (follow_last or not last):
                hops += 1
                if hops > _MAX_LINKS or found.entry.target is None:
                    return None
                target = posixpath.normpath(posixpath.join(current, found.entry.target))
                parts = [p for p in target.split("/") if p] + parts
                current = "/"
                continue
            current = candidate
        return current

    def _read_from_layer(self, path: str, layer: int) -> bytes | None:
        if self._open_layer is None:
            return None
        log.debug("reading %s from base layer %d", path, layer)
        wanted = path.lstrip("/")
        with self._open_layer(layer) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if _member_path(member.name) == wanted and member.isreg():
                    handle = tar.extractfile(member)
                    return handle.read() if handle is not None else None
        return None


def _absolute(name: str) -> str:
    return "/" + name.lstrip("/")


def _member_path(name: str) -> str:
    cleaned = posixpath.normpath("/" + name).lstrip("/")
    return "" if cleaned == "." else cleaned


def _kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "other"


def index_layers(count: int, open_layer: LayerOpener, files: Path) -> dict[str, Indexed]:
    """Read layers ``0..count-1`` in order into an index, keeping small files under ``files``."""
    index: dict[str, Indexed] = {}
    for number in range(count):
        added: list[Indexed] = []
        removed: list[str] = []
        opaque: list[str] = []
        with open_layer(number) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                path = _member_path(member.name)
                if not path:
                    continue
                parent, name = posixpath.split(path)
                if name == ".wh..wh..opq":
                    opaque.append("/" + parent if parent else "/")
                    continue
                if name.startswith(".wh."):
                    removed.append(posixpath.join("/" + parent, name[len(".wh.") :]))
                    continue
                kind = _kind(member)
                target = member.linkname if kind in ("symlink", "hardlink") else None
                if kind == "hardlink" and target:
                    target = "/" + _member_path(target)
                entry = FileEntry("/" + path, kind, member.mode, member.uid, member.gid, target)  # type: ignore[arg-type]
                added.append(Indexed(entry, number, member.size if kind == "file" else 0))
                if kind == "file" and kept(path, member.size):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        _keep(files / path, handle)
        for directory in opaque:
            _remove_below(index, directory, include_self=False)
        for path in removed:
            _remove_below(index, path, include_self=True)
        for row in added:
            index[row.entry.path] = row
            parent = posixpath.dirname(row.entry.path)
            while parent != "/" and parent not in index:  # a tar may leave its parents implied
                index[parent] = Indexed(FileEntry(parent, "dir", 0o755), number)
                parent = posixpath.dirname(parent)
    return index


def _keep(target: Path, handle: IO[bytes]) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        shutil.copyfileobj(handle, out)


def _remove_below(index: dict[str, Indexed], path: str, *, include_self: bool) -> None:
    prefix = path.rstrip("/") + "/"
    for name in [n for n in index if n.startswith(prefix) or (include_self and n == path)]:
        del index[name]


# --- the on-disk cache -------------------------------------------------------------------------


def _dump(index: dict[str, Indexed]) -> str:
    rows = [
        [r.entry.path, r.entry.kind, r.entry.mode, r.entry.uid, r.entry.gid, r.entry.target, r.layer, r.size]
        for r in sorted(index.values(), key=lambda r: r.entry.path)
    ]
    return json.dumps({"version": INDEX_VERSION, "entries": rows}, separators=(",", ":"))


def _load(text: str) -> dict[str, Indexed]:
    data = json.loads(text)
    if data.get("version") != INDEX_VERSION:
        raise ValueError("index version")
    index: dict[str, Indexed] = {}
    for path, kind, mode, uid, gid, target, layer, size in data["entries"]:
        index[path] = Indexed(FileEntry(path, kind, mode, uid, gid, target), layer, size)
    return index


def base_files(
    cache_dir: Path, layer_count: int, open_layer: LayerOpener, *, describe: str = "base image"
) -> LayerFiles:
    """The LayerFiles for one base: from ``cache_dir`` when indexed before, else by reading its layers.

    ``cache_dir`` is ``bases/<config hex>``; it is written whole into a temp directory and
    renamed, so a build interrupted while indexing leaves nothing half-written.
    """
    index_file = cache_dir / "index.json"
    try:
        return LayerFiles(_load(index_file.read_text(encoding="utf-8")), cache_dir / "files", open_layer)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    log.info("indexing the %d layers of %s", layer_count, describe)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir.parent, prefix=f".{cache_dir.name}-"))
    try:
        index = index_layers(layer_count, open_layer, tmp / "files")
        (tmp / "index.json").write_text(_dump(index), encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if cache_dir.exists():  # unreadable (an older format): replace it
        shutil.rmtree(cache_dir, ignore_errors=True)
    try:
        os.replace(tmp, cache_dir)
    except OSError:  # another build indexed the same base meanwhile: its files are the same
        shutil.rmtree(tmp, ignore_errors=True)
    return LayerFiles(index, cache_dir / "files", open_layer)


def walk(files: LayerFiles, paths: Sequence[str]) -> Iterator[tuple[str, FileEntry]]:
    """(path, entry) for each of ``paths`` that exists (no final symlink followed)."""
    for path in paths:
        entry = files.entry(path)
        if entry is not None:
            yield path, entry


# --- helpers over any BaseFiles -----------------------------------------------------------------


def realpath(files: BaseFiles, path: str) -> str | None:
    """``path`` with every symlink followed through ``files.entry``, or None when it leads nowhere."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
    current = "/"
    hops = 0
    while parts:
        candidate = posixpath.join(current, parts.pop(0))
        entry = files.entry(candidate)
        if entry is None:
            return None
        if entry.kind == "symlink":
            hops += 1
            if hops > _MAX_LINKS or entry.target is None:
                return None
            target = posixpath.normpath(posixpath.join(current, entry.target))
            parts = [p for p in target.split("/") if p] + parts
            current = "/"
            continue
        current = candidate
    return current


def is_dir(files: BaseFiles, path: str) -> bool:
    """Whether ``path`` (symlinks followed) is a directory in ``files``."""
    real = realpath(files, path)
    if real is None:
        return False
    if real == "/":
        return True
    entry = files.entry(real)
    return entry is not None and entry.kind == "dir"


class DirectoryFiles:
    """``BaseFiles`` over a host directory that appears at ``mount`` in the image (a bundled Python).

    Paths outside ``mount`` do not exist; symlinks are read, not followed, on the host.
    """

    def __init__(self, root: Path, mount: str) -> None:
        self.root = root
        self.mount = posixpath.normpath("/" + mount)

    def _host(self, path: str) -> Path | None:
        cleaned = posixpath.normpath("/" + path)
        if cleaned == self.mount:
            return self.root
        if not cleaned.startswith(self.mount.rstrip("/") + "/"):
            return None
        return self.root / cleaned[len(self.mount) :].lstrip("/")

    def entry(self, path: str) -> FileEntry | None:
        host = self._host(path)
        if host is None:
            if self.mount.startswith(posixpath.normpath("/" + path).rstrip("/") + "/"):
                return FileEntry(posixpath.normpath("/" + path), "dir", 0o755)  # a parent of the mount
            return None
        try:
            info = host.lstat()
        except OSError:
            return None
        image_path = posixpath.normpath("/" + path)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            return FileEntry(image_path, "symlink", 0o777, target=os.readlink(host))
        if stat.S_ISDIR(info.st_mode):
            return FileEntry(image_path, "dir", mode)
        if stat.S_ISREG(info.st_mode):
            return FileEntry(image_path, "file", mode)
        return FileEntry(image_path, "other", mode)

    def read(self, path: str) -> bytes | None:
        real = realpath(self, path)
        host = self._host(real) if real is not None else None
        if host is None or not host.is_file():
            return None
        return host.read_bytes()
