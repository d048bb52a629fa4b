"""A content-addressed blob store on disk, shared by every build, and a cache of layers by their inputs.

Blobs live at ``<root>/blobs/sha256/<hex>`` (``~/.cache/kiln/oci`` unless told otherwise):
a layer that a previous build already wrote is not written again, and an output or a
push reads it from there. ``LayerCache`` maps a key that names a layer's inputs (or its
tree's content) to the layer's digests, so an unchanged layer is not even re-tarred.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kiln.oci.types import Blob, Descriptor

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def hex_of(digest: str) -> str:
    """``<hex>`` of ``sha256:<hex>``; ValueError for any other algorithm or shape."""
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return value


class BlobWriter:
    """Bytes written here are hashed and land in the store under their digest on ``commit``."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        store.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=store.tmp, prefix="blob-")
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self._file.write(data)
        self.size += len(data)
        return len(data)

    def commit(self) -> tuple[str, int, bool]:
        """(digest, size, written): ``written`` is False when the store already had these bytes."""
        self._file.close()
        digest = "sha256:" + self._sha.hexdigest()
        target = self._store.path(digest)
        if target.exists() and target.stat().st_size == self.size:
            self._tmp.unlink()
            return digest, self.size, False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, target)
        return digest, self.size, True

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class BlobStore:
    """``<root>/blobs/sha256/<hex>``; writes go through a temp file in ``<root>/tmp`` and a rename."""

    root: Path

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / hex_of(digest)

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            stat = self.path(digest).stat()
        except OSError:
            return False
        return size is None or stat.st_size == size

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put_bytes(self, data: bytes, media_type: str) -> Blob:
        """Store ``data`` (a config, a manifest) and return it as a Blob."""
        writer = self.writer()
        writer.write(data)
        digest, size, _ = writer.commit()
        return Blob(Descriptor(media_type, digest, size), path=self.path(digest))

    def put_stream(self, stream: BinaryIO, *, expected: str | None = None) -> tuple[str, int]:
        """Copy ``stream`` into the store; ValueError when ``expected`` is given and differs."""
        writer = self.writer()
        try:
            while chunk := stream.read(_CHUNK):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        if expected is not None and "sha256:" + writer._sha.hexdigest() != expected:
            actual = "sha256:" + writer._sha.hexdigest()
            writer.abort()
            raise ValueError(f"content digest {actual} does not match the expected {expected}")
        digest, size, _ = writer.commit()
        return digest, size


@dataclass(frozen=True)
class CachedLayer:
    """What ``LayerCache`` remembers of a layer: enough to use it without reading it."""

    digest: str
    size: int
    diff_id: str
    media_type: str

    def blob(self, store: BlobStore) -> Blob:
        return Blob(
            Descriptor(self.media_type, self.digest, self.size),
            path=store.path(self.digest),
            diff_id=self.diff_id,
        )


class LayerCache:
    """Layer digests by a key of their inputs, as small JSON files next to the blobs."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.directory = store.root / "layers"

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> CachedLayer | None:
        """The layer stored under ``key``, if its blob is still in the store."""
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            layer = CachedLayer(**data)
        except (OSError, ValueError, TypeError):
            return None
        if not self.store.has(layer.digest, layer.size):
            return None
        return layer

    def put(self, key: str, layer: CachedLayer) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(layer.__dict__, sort_keys=True), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:  # a cache that cannot be written only costs time
            log.debug("could not record layer %s: %s", key, exc)


def copy_blob(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` when both are on one filesystem, else copy (atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
    os.replace(tmp, target)
