"""A base image in a registry (``docker://REF`` or ``REGISTRY/REPO:TAG``).

Only the manifest and config are fetched; the layers are streamed once to index the base's
filesystem (cached by config digest), never stored unless an output needs them (``fetch_layers``),
and never re-uploaded by a push to the same registry (it has them already, or mounts them).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import BinaryIO

from kiln.errors import BuildError
from kiln.oci.basefs import base_files
from kiln.oci.blobstore import BlobStore
from kiln.oci.registry import fetch_base, stream_layer
from kiln.oci.sources.base import LAYER_TYPES, BaseImage, base_cache, checked_config, host_os_arch
from kiln.oci.types import Blob

log = logging.getLogger(__name__)


def open_registry_base(text: str, reference: str, platform: str | None, store: BlobStore) -> BaseImage:
    remote = fetch_base(text, platform or host_os_arch())
    config, _ = checked_config(remote.config, reference, platform, layers=len(remote.layers))
    layers = tuple(_remote_layer(blob, reference) for blob in remote.layers)

    @contextlib.contextmanager
    def open_layer(number: int) -> Iterator[BinaryIO]:
        chunks = stream_layer(remote, remote.layers[number])
        try:
            yield _ChunkReader(chunks)  # type: ignore[misc]
        finally:
            chunks.close()  # type: ignore[attr-defined]

    name = text  # as the user wrote it, like the Docker backend's label
    files = base_files(
        base_cache(store, remote.config_descriptor.digest), len(layers), open_layer, describe=reference
    )
    return BaseImage(
        reference, name, remote.digest, config, remote.config_descriptor.digest, layers, files, remote
    )


def _remote_layer(blob: Blob, reference: str) -> Blob:
    media_type = blob.descriptor.media_type
    if media_type not in LAYER_TYPES:
        raise BuildError(
            f"base image {reference!r}: layer {blob.digest} has media type {media_type!r}, which "
            "--backend oci cannot read"
        )
    return replace(blob, descriptor=replace(blob.descriptor, media_type=LAYER_TYPES[media_type]))


def fetch_layers(base: BaseImage, store: BlobStore) -> BaseImage:
    """``base`` with every layer in the local store (downloaded once) for outputs that hold the whole
    image (a layout, an archive, ``docker load``); a no-op for bases whose layers are local."""
    if base.remote is None or all(layer.path is not None for layer in base.layers):
        return base
    fetched: list[Blob] = []
    for blob in base.layers:
        if not store.has(blob.digest, blob.descriptor.size):
            log.info(
                "downloading base layer %s (%d bytes) for a local output",
                blob.digest[:19],
                blob.descriptor.size,
            )
            chunks = stream_layer(base.remote, blob)
            try:
                store.put_stream(_ChunkReader(chunks), expected=blob.digest)  # type: ignore[arg-type]
            finally:
                chunks.close()  # type: ignore[attr-defined]
        fetched.append(replace(blob, path=store.path(blob.digest)))
    return replace(base, layers=tuple(fetched))


class _ChunkReader:
    """A read()-able file over an iterator of byte chunks (a registry blob stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data
