"""Reproducible layers: a directory tree (plus explicit entries) -> a sorted tar, gzipped, in one pass.

The same entries always give the same bytes: paths sorted, owner root (or what an entry
says), modes normalised, every mtime ``SOURCE_DATE_EPOCH``, no user or group names,
PAX headers only where a path is too long (and then with fixed fields), and gzip with
no file name, mtime 0 and a pinned level. The tar is hashed (the ``diff_id``) and
compressed as it is written, and the compressed bytes are hashed (the ``digest``) on
their way into the blob store: a layer is never held in memory.

Paths are laid over a base image the way a container engine would apply them: a parent
directory that the base has keeps the base's mode and owner (``/tmp`` stays 1777), and a
path under a directory the base has as a symlink (``/lib -> usr/lib`` on merged-/usr
Debian) is written under the symlink's target, so the layer never replaces the link.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal

from kiln.oci.blobstore import BlobStore, BlobWriter, CachedLayer
from kiln.oci.compress import ParallelGzip
from kiln.oci.types import MEDIA_OCI_LAYER_GZIP, BaseFiles, FileEntry

GZIP_LEVEL = 6
"""Pinned: another level gives other bytes, so another digest for the same layer."""

Kind = Literal["file", "dir", "symlink", "hardlink"]
ModePolicy = Literal["normalize", "keep"]

_MAX_LINKS = 40


@dataclass(frozen=True)
class Entry:
    """One path of a layer: where it goes in the image and what it is."""

    path: str
    """Absolute POSIX path in the image, e.g. ``/opt/kiln/venv/bin/python``."""
    kind: Kind
    mode: int
    """Permission bits, setuid/setgid/sticky included."""
    uid: int = 0
    gid: int = 0
    source: Path | None = None
    """A regular file's content, read when the layer is written."""
    data: bytes | None = None
    """A regular file's content given inline (``/etc/passwd``)."""
    target: str | None = None
    """A symlink's target as written, or a hardlink's target path in the image."""
    inode: tuple[int, int] | None = None
    """(device, inode) of a host file with several links: equal inodes become tar hardlinks."""

    @classmethod
    def directory(cls, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
        return cls(path, "dir", mode, uid, gid)

    @classmethod
    def file(cls, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
        return cls(path, "file", mode, uid, gid, data=data)

    @classmethod
    def symlink(cls, path: str, target: str) -> Entry:
        return cls(path, "symlink", 0o777, target=target)


def tree_entries(root: Path, *, modes: ModePolicy = "normalize", prefix: str = "/") -> list[Entry]:
    """Every path under ``root`` as an Entry at ``prefix`` + its relative path (``root`` itself not included).

    ``normalize``: directories 0755, files 0755 when any execute bit is set, else 0644
    (the host's umask never leaks in). ``keep``: the permission bits as they are on disk,
    for trees unpacked from packages that set them on purpose (setuid helpers, 0700 dirs).
    Owners are always root: a tree made by an unprivileged build must not carry its uid.
    """
    entries: list[Entry] = []
    base = prefix.rstrip("/")
    for current, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(current)
        relative = here.relative_to(root).as_posix()
        image_dir = base if relative == "." else f"{base}/{relative}"
        for name in sorted([*dirnames, *filenames]):
            path = here / name
            info = path.lstat()
            image_path = f"{image_dir}/{name}"
            entries.append(_entry(image_path, path, info, modes))
            if stat.S_ISLNK(info.st_mode) and name in dirnames:
                dirnames.remove(name)  # a link to a directory stays a link
    return entries


def _entry(image_path: str, path: Path, info: os.stat_result, modes: ModePolicy) -> Entry:
    bits = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        return Entry.symlink(image_path, os.readlink(path))
    if stat.S_ISDIR(info.st_mode):
        return Entry.directory(image_path, 0o755 if modes == "normalize" else bits)
    if stat.S_ISREG(info.st_mode):
        mode = (0o755 if bits & 0o111 else 0o644) if modes == "normalize" else bits
        inode = (info.st_dev, info.st_ino) if info.st_nlink > 1 else None
        return Entry(image_path, "file", mode, source=path, inode=inode)
    raise ValueError(f"{path} is not a regular file, directory or symlink (cannot go into a layer)")


@dataclass(frozen=True)
class LayerResult:
    """A written layer and whether the store already had its bytes."""

    layer: CachedLayer
    written: bool
    """False when an earlier build had written exactly this blob."""
    uncompressed_size: int


def write_layer(
    entries: Iterable[Entry],
    store: BlobStore,
    *,
    base: BaseFiles | None = None,
    epoch: int = 0,
    level: int = GZIP_LEVEL,
) -> LayerResult:
    """Write ``entries`` as a gzipped layer tar into ``store``; the layer's digests and size.

    Later entries for the same path win (an explicit ``/etc/passwd`` over a tree's).
    """
    planned = plan_entries(entries, base)

    def feed(sink: _LayerSink) -> None:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for entry in planned:
                _add(tar, entry, epoch)

    return _store_layer(store, level, feed)


def gzip_stream(source: BinaryIO, store: BlobStore, *, level: int = GZIP_LEVEL) -> LayerResult:
    """Compress an existing layer tar (a ``docker save`` layer) into the store, deterministically."""

    def feed(sink: _LayerSink) -> None:
        while chunk := source.read(1 << 20):
            sink.write(chunk)

    return _store_layer(store, level, feed)


def _store_layer(store: BlobStore, level: int, feed: Callable[[_LayerSink], None]) -> LayerResult:
    """Run ``feed`` with a sink that hashes the tar and gzips it into the store; the layer it made."""
    sink = _LayerSink(store.writer(), level)
    try:
        feed(sink)
        tar_size = sink.finish()
    except BaseException:
        sink.abort()
        raise
    digest, size, written = sink.writer.commit()
    layer = CachedLayer(digest=digest, size=size, diff_id=sink.diff_id, media_type=MEDIA_OCI_LAYER_GZIP)
    return LayerResult(layer, written, tar_size)


def plan_entries(entries: Iterable[Entry], base: BaseFiles | None) -> list[Entry]:
    """The entries as they go into the tar: rebased through the base's symlinked directories,
    missing parents added, directories the base has given the base's metadata, sorted,
    later duplicates winning, and files sharing an inode turned into hardlinks."""
    resolver = _BaseResolver(base)
    by_path: dict[str, Entry] = {}
    for entry in entries:
        path = resolver.rebase(_clean(entry.path))
        if path == "/":
            continue
        if entry.kind == "dir" and resolver.is_linked_dir(path):
            continue  # the base's symlink stays; what is under it went to its target
        by_path[path] = replace(entry, path=path)
    for path in list(by_path):
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in by_path:
            by_path[parent] = Entry.directory(parent)
            parent = posixpath.dirname(parent)
    for path, entry in by_path.items():
        if entry.kind == "dir":
            found = resolver.base_dir(path)
            if found is not None:
                by_path[path] = replace(entry, mode=found.mode, uid=found.uid, gid=found.gid)
    ordered = sorted(by_path.values(), key=lambda e: e.path.split("/"))
    return _hardlinks(ordered)


def _hardlinks(ordered: Sequence[Entry]) -> list[Entry]:
    first: dict[tuple[int, int], str] = {}
    out: list[Entry] = []
    for entry in ordered:
        if entry.kind == "file" and entry.inode is not None:
            if entry.inode in first:
                out.append(replace(entry, kind="hardlink", target=first[entry.inode], source=None))
                continue
            first[entry.inode] = entry.path
        out.append(entry)
    return out


def _clean(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"layer paths are absolute, got {path!r}")
    cleaned = posixpath.normpath(path)
    return "/" if cleaned == "//" else cleaned


class _BaseResolver:
    """Answers, for paths of a new layer, what the base image has there (memoised)."""

    def __init__(self, base: BaseFiles | None) -> None:
        self._base = base
        self._dirs: dict[str, str] = {}

    def rebase(self, path: str) -> str:
        """``path`` with every parent component that is a symlink in the base followed."""
        if self._base is None or path == "/":
            return path
        parent, name = posixpath.split(path)
        return posixpath.join(self._resolve_dir(parent, 0), name)

    def _resolve_dir(self, path: str, depth: int) -> str:
        if path == "/" or self._base is None:
            return path
        if path in self._dirs:
            return self._dirs[path]
        parent, name = posixpath.split(path)
        resolved = posixpath.join(self._resolve_dir(parent, depth), name)
        entry = self._base.entry(resolved)
        if entry is not None and entry.kind == "symlink" and entry.target and depth < _MAX_LINKS:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(resolved), entry.target))
            resolved = self._resolve_dir(target, depth + 1)
        self._dirs[path] = resolved
        return resolved

    def is_linked_dir(self, path: str) -> bool:
        if self._base is None:
            return False
        entry = self._base.entry(path)
        return entry is not None and entry.kind == "symlink"

    def base_dir(self, path: str) -> FileEntry | None:
        if self._base is None:
            return None
        entry = self._base.entry(path)
        return entry if entry is not None and entry.kind == "dir" else None


def _add(tar: tarfile.TarFile, entry: Entry, epoch: int) -> None:
    info = tarfile.TarInfo(entry.path.lstrip("/"))
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = epoch
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target or ""
        tar.addfile(info)
    elif entry.kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = (entry.target or "").lstrip("/")
        tar.addfile(info)
    elif entry.data is not None:
        info.size = len(entry.data)
        tar.addfile(info, io.BytesIO(entry.data))
    else:
        assert entry.source is not None, entry
        with open(entry.source, "rb") as handle:
            info.size = os.fstat(handle.fileno()).st_size
            tar.addfile(info, handle)


class _LayerSink:
    """A write-only file for tarfile: hashes the tar, gzips it, hands the gzip bytes to the store."""

    def __init__(self, writer: BlobWriter, level: int) -> None:
        self.writer = writer
        self._tar_sha = hashlib.sha256()
        self._size = 0
        self._gzip = ParallelGzip(writer.write, level)
        self.diff_id = ""

    def write(self, data: bytes) -> int:
        self._tar_sha.update(data)
        self._size += len(data)
        self._gzip.write(data)
        return len(data)

    def finish(self) -> int:
        self._gzip.finish()
        self.diff_id = "sha256:" + self._tar_sha.hexdigest()
        return self._size

    def abort(self) -> None:
        self._gzip.close()
        self.writer.abort()
