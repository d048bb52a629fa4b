"""``docker-archive:PATH[:REF]``: a ``docker save`` tarball as a base image.

Its layer tars are gzipped into kiln's blob store once (deterministically; a layer already
gzipped is kept as given) and remembered by diff id, so later builds read the archive only
for its config.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from kiln.errors import BuildError, UsageError
from kiln.oci.basefs import base_files
from kiln.oci.blobstore import BlobStore, CachedLayer, LayerCache, hex_of
from kiln.oci.canonical import canonical_json
from kiln.oci.compress import fingerprint
from kiln.oci.layer import GZIP_LEVEL, gzip_stream
from kiln.oci.manifest import assemble, describe, manifest_json
from kiln.oci.sources.base import BaseImage, base_cache, checked_config
from kiln.oci.transports import existing_location
from kiln.oci.types import MEDIA_OCI_CONFIG, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_MANIFEST, Blob, Image

log = logging.getLogger(__name__)


def open_docker_archive(reference: str, platform: str | None, store: BlobStore) -> BaseImage:
    path, ref = _location(reference)
    try:
        with tarfile.open(path, mode="r:") as tar:
            entries = json.loads(_member(tar, "manifest.json", reference))
            entry = _pick_archive_entry(entries, ref, reference)
            config_bytes = _member(tar, str(entry["Config"]), reference)
            layer_names = [str(name) for name in entry["Layers"]]
            index = tar.extractfile("index.json") if "index.json" in tar.getnames() else None
            index_bytes = index.read() if index is not None else None
    except (OSError, tarfile.TarError, ValueError, KeyError, TypeError) as exc:
        raise BuildError(
            f"base image {reference!r}: {path} is not a readable docker-archive (a 'docker save' tarball "
            f"with manifest.json): {exc}"
        ) from exc
    config, diff_ids = checked_config(config_bytes, reference, platform, layers=len(layer_names))
    cache = LayerCache(store)
    layers = tuple(
        _archive_layer(path, name, diff_id, store, cache, reference)
        for name, diff_id in zip(layer_names, diff_ids)
    )

    def open_layer(number: int) -> contextlib.AbstractContextManager[BinaryIO]:
        return _archive_member_stream(path, layer_names[number])

    config_descriptor = describe(config_bytes, MEDIA_OCI_CONFIG)
    digest = (
        _saved_manifest_digest(index_bytes, path, config_descriptor.digest)
        or describe(
            canonical_json(manifest_json(config_descriptor, [b.descriptor for b in layers])),
            MEDIA_OCI_MANIFEST,
        ).digest
    )
    tags = [str(t) for t in entry.get("RepoTags") or []]
    name = ref if ref and ref in tags else (tags[0] if tags else "")
    files = base_files(
        base_cache(store, config_descriptor.digest), len(layers), open_layer, describe=reference
    )
    return BaseImage(reference, name, digest, config, config_descriptor.digest, layers, files)


def image_of_archive(path: Path, ref: str | None, store: BlobStore) -> tuple[Image, dict[str, str]]:
    """The image in a ``docker save`` tarball as an OCI image to push or write (``kiln push``, the Docker
    backend's ``--push``): its config as saved (same image ID), its layers gzipped into the store
    (deterministically, once per layer), and its platform. Its filesystem is not indexed."""
    reference = f"docker-archive:{path}" + (f":{ref}" if ref else "")
    try:
        with tarfile.open(path, mode="r:") as tar:
            entry = _pick_archive_entry(json.loads(_member(tar, "manifest.json", reference)), ref, reference)
            config_bytes = _member(tar, str(entry["Config"]), reference)
            layer_names = [str(name) for name in entry["Layers"]]
    except (OSError, tarfile.TarError, ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"{path} is not a readable docker-archive ('docker save' tarball): {exc}") from exc
    config, diff_ids = checked_config(config_bytes, reference, None, layers=len(layer_names))
    cache = LayerCache(store)
    layers = [
        _archive_layer(path, name, diff_id, store, cache, reference)
        for name, diff_id in zip(layer_names, diff_ids)
    ]
    platform = {"os": str(config.get("os", "linux")), "architecture": str(config.get("architecture", ""))}
    if config.get("variant"):
        platform["variant"] = str(config["variant"])
    return assemble(store.put_bytes(config_bytes, MEDIA_OCI_CONFIG), layers), platform


def _location(reference: str) -> tuple[Path, str | None]:
    location = existing_location(reference)
    assert location is not None, reference  # open_base dispatched on the transport
    return location.path, location.ref


def _member(tar: tarfile.TarFile, name: str, reference: str) -> bytes:
    handle = tar.extractfile(name)
    if handle is None:
        raise KeyError(name)
    return handle.read()


def _pick_archive_entry(entries: Any, ref: str | None, reference: str) -> Mapping[str, Any]:
    if not isinstance(entries, list) or not entries:
        raise ValueError("manifest.json lists no image")
    if ref is None:
        if len(entries) == 1:
            return dict(entries[0])
        tags = [t for e in entries for t in e.get("RepoTags") or []]
        raise UsageError(
            f"base image {reference!r}: the archive holds {len(entries)} images; name one "
            f"(docker-archive:PATH:REF with REF one of {', '.join(tags) or 'their tags'})"
        )
    for item in entries:
        if ref in (item.get("RepoTags") or []):
            return dict(item)
    raise UsageError(f"base image {reference!r}: the archive has no image tagged {ref!r}")


@contextlib.contextmanager
def _archive_member_stream(path: Path, name: str) -> Iterator[BinaryIO]:
    with tarfile.open(path, mode="r:") as tar:
        handle = tar.extractfile(name)
        if handle is None:
            raise BuildError(f"{path}: layer {name} is not a file")
        yield handle  # type: ignore[misc]


def _archive_layer(
    path: Path, name: str, diff_id: str, store: BlobStore, cache: LayerCache, reference: str
) -> Blob:
    """Layer ``name`` of the archive as a gzip blob in the store (compressed once, then cached)."""
    key = (
        "archive-" + hashlib.sha256(f"{diff_id}\n{name}\n{GZIP_LEVEL}\n{fingerprint()}".encode()).hexdigest()
    )
    cached = cache.get(key)
    if cached is not None:
        return cached.blob(store)
    log.info("compressing base layer %s of %s", diff_id[:19], reference)
    with _archive_member_stream(path, name) as stream:
        head = stream.read(2)
        stream.seek(0)
        if head == b"\x1f\x8b":  # already gzipped (some tools save that way): keep the bytes
            digest, size = store.put_stream(stream)
            layer = CachedLayer(digest, size, diff_id, MEDIA_OCI_LAYER_GZIP)
        else:
            result = gzip_stream(stream, store)
            layer = result.layer
            if layer.diff_id != diff_id:
                raise BuildError(
                    f"base image {reference!r}: layer {name} has digest {layer.diff_id}, "
                    f"but the config says {diff_id} (the archive is corrupt)"
                )
    cache.put(key, layer)
    return layer.blob(store)


def _saved_manifest_digest(index_bytes: bytes | None, path: Path, config_digest: str) -> str | None:
    """The digest of the manifest a ``docker save`` of Docker 25+ wrote, when it names this config."""
    if index_bytes is None:
        return None
    try:
        index = json.loads(index_bytes)
        with tarfile.open(path, mode="r:") as tar:
            for entry in index.get("manifests") or []:
                data = _member(tar, f"blobs/sha256/{hex_of(entry['digest'])}", str(path))
                if json.loads(data).get("config", {}).get("digest") == config_digest:
                    return str(entry["digest"])
    except (OSError, tarfile.TarError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return None
