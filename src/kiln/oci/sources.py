"""Base images for ``--backend oci``, named with skopeo's transports: an archive, a layout or a registry.

- ``docker-archive:PATH[:REF]``: a ``docker save`` tarball. Its layer tars are gzipped
  into kiln's blob store once (deterministically; a layer already gzipped is kept as
  given) and remembered by diff id, so later builds read the archive only for its config.
- ``oci:DIR[:TAG]``: an OCI image layout; TAG picks the ``org.opencontainers.image.ref.name``
  (the only image when omitted). Its blobs are used where they are.
- anything else (``docker://REF`` or a plain ``REGISTRY/REPO:TAG``): a registry. Only the
  manifest and config are fetched; the layers are streamed once to index the base's
  filesystem (cached by config digest), never stored unless an output needs them
  (``--output oci:``/``docker-archive:``/``docker``), and never re-uploaded by ``--push``
  to the same registry (the registry already has them, or mounts them).

Every base is pinned by a manifest digest, recorded in the image's
``org.opencontainers.image.base.digest`` annotation and label.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform as host_platform
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from kiln.errors import BuildError, UsageError
from kiln.oci.basefs import LayerFiles, base_files
from kiln.oci.blobstore import BlobStore, CachedLayer, LayerCache, hex_of
from kiln.oci.canonical import canonical_json
from kiln.oci.compress import fingerprint
from kiln.oci.layer import GZIP_LEVEL, gzip_stream
from kiln.oci.manifest import describe, manifest_json
from kiln.oci.types import (
    INDEX_MEDIA_TYPES,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_TAR,
    MEDIA_OCI_MANIFEST,
    Blob,
    Descriptor,
)

log = logging.getLogger(__name__)

UNSUPPORTED_TRANSPORTS = ("oci-archive:", "docker-daemon:", "dir:", "containers-storage:", "ostree:", "sif:")
_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
_LAYER_TYPES = {
    MEDIA_DOCKER_LAYER_GZIP: MEDIA_OCI_LAYER_GZIP,
    _DOCKER_LAYER_TAR: MEDIA_OCI_LAYER_TAR,
    MEDIA_OCI_LAYER_GZIP: MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_TAR: MEDIA_OCI_LAYER_TAR,
}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class BaseImage:
    """A base image resolved and pinned: its config, its layers as blobs, its filesystem."""

    reference: str
    """What ``--base-image`` said."""
    name: str
    """A transport-free name for ``org.opencontainers.image.base.name`` ("" when it has none)."""
    digest: str
    """The manifest digest that pins it."""
    config: Mapping[str, Any]
    config_digest: str
    layers: tuple[Blob, ...]
    files: LayerFiles = field(repr=False)
    remote: Any = field(default=None, repr=False)
    """The registry's RemoteBase, for a registry base (its layers have no local path)."""

    @property
    def platform(self) -> dict[str, str]:
        found = {
            "os": str(self.config.get("os", "linux")),
            "architecture": str(self.config.get("architecture")),
        }
        if self.config.get("variant"):
            found["variant"] = str(self.config["variant"])
        return found

    @property
    def os_arch(self) -> str:
        return "/".join(self.platform.get(key, "") for key in ("os", "architecture", "variant")).rstrip("/")


def host_os_arch() -> str:
    return "linux/" + _ARCH.get(host_platform.machine().lower(), host_platform.machine().lower())


def open_base(reference: str, *, platform: str | None, store: BlobStore) -> BaseImage:
    """Resolve ``--base-image`` (any transport) and index its filesystem."""
    for prefix in UNSUPPORTED_TRANSPORTS:
        if reference.startswith(prefix):
            raise UsageError(
                f"base image {reference!r}: the {prefix[:-1]} transport is not supported by --backend oci "
                "(expected docker-archive:PATH, oci:DIR[:TAG], or a registry reference REGISTRY/REPO:TAG)",
                hint="for an image in the local Docker engine: docker save IMAGE -o base.tar, then "
                "--base-image docker-archive:base.tar",
            )
    if reference.startswith("docker-archive:"):
        return _docker_archive(reference, platform, store)
    if reference.startswith("oci:"):
        return _oci_layout(reference, platform, store)
    return _registry(reference.removeprefix("docker://"), reference, platform, store)


# --- docker-archive: ---------------------------------------------------------------------------


def _split_path(value: str, what: str, *, directory: bool) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH:REF``: the longest prefix that exists wins (paths may hold colons)."""
    whole = Path(value).expanduser()
    if whole.exists():
        return whole, None
    head, sep, _ = value.rpartition(":")
    while sep:
        candidate = Path(head).expanduser()
        if candidate.exists():
            return candidate, value[len(head) + 1 :]
        head, sep, _ = head.rpartition(":")
    kind = "directory" if directory else "file"
    raise UsageError(f"base image {what!r}: no such {kind} {value!r}")


def _docker_archive(reference: str, platform: str | None, store: BlobStore) -> BaseImage:
    path, ref = _split_path(reference.removeprefix("docker-archive:"), reference, directory=False)
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
    config, diff_ids = _config(config_bytes, reference, platform, layers=len(layer_names))
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
        _base_cache(store, config_descriptor.digest), len(layers), open_layer, describe=reference
    )
    return BaseImage(reference, name, digest, config, config_descriptor.digest, layers, files)


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


# --- oci: -------------------------------------------------------------------------------------


def _oci_layout(reference: str, platform: str | None, store: BlobStore) -> BaseImage:
    root, tag = _split_path(reference.removeprefix("oci:"), reference, directory=True)
    try:
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
        descriptor = _pick_layout_entry(index, tag, reference)
        manifest_bytes = _blob_path(root, descriptor["digest"]).read_bytes()
        manifest = json.loads(manifest_bytes)
        if descriptor.get("mediaType") in INDEX_MEDIA_TYPES or manifest.get("manifests") is not None:
            descriptor = _pick_platform(manifest, platform or host_os_arch(), reference)
            manifest_bytes = _blob_path(root, descriptor["digest"]).read_bytes()
            manifest = json.loads(manifest_bytes)
        config_bytes = _blob_path(root, manifest["config"]["digest"]).read_bytes()
        layer_json = list(manifest["layers"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BuildError(
            f"base image {reference!r}: {root} is not a readable OCI image layout: {exc}"
        ) from exc
    config, diff_ids = _config(config_bytes, reference, platform, layers=len(layer_json))
    layers = tuple(
        _layout_layer(root, item, diff_id, reference) for item, diff_id in zip(layer_json, diff_ids)
    )

    @contextlib.contextmanager
    def open_layer(number: int) -> Iterator[BinaryIO]:
        path = layers[number].path
        assert path is not None
        with open(path, "rb") as handle:
            yield handle

    config_digest = describe(config_bytes, MEDIA_OCI_CONFIG).digest
    annotations = descriptor.get("annotations") or {}
    name = str(
        annotations.get("io.containerd.image.name")
        or annotations.get("org.opencontainers.image.ref.name")
        or ""
    )
    files = base_files(_base_cache(store, config_digest), len(layers), open_layer, describe=reference)
    digest = str(descriptor["digest"])
    return BaseImage(reference, name, digest, config, config_digest, layers, files)


def _pick_layout_entry(index: Mapping[str, Any], tag: str | None, reference: str) -> Mapping[str, Any]:
    manifests = list(index.get("manifests") or [])
    names = [
        str((m.get("annotations") or {}).get("org.opencontainers.image.ref.name", "")) for m in manifests
    ]
    if tag is None:
        if len(manifests) == 1:
            return dict(manifests[0])
        raise UsageError(
            f"base image {reference!r}: the layout holds {len(manifests)} images; name one with "
            f"oci:DIR:TAG (TAG one of {', '.join(n for n in names if n) or 'none named'})"
        )
    for item, name in zip(manifests, names):
        if name == tag:
            return dict(item)
    raise UsageError(
        f"base image {reference!r}: the layout has no image named {tag!r} "
        f"(it has: {', '.join(n for n in names if n) or 'none named'})"
    )


def _pick_platform(index: Mapping[str, Any], wanted: str, reference: str) -> Mapping[str, Any]:
    found: list[str] = []
    for item in index.get("manifests") or []:
        platform = item.get("platform") or {}
        text = "/".join(
            p for p in (platform.get("os"), platform.get("architecture"), platform.get("variant")) if p
        )
        found.append(text)
        if text == wanted or (text.rsplit("/", 1)[0] == wanted and platform.get("variant")):
            return dict(item)
    raise BuildError(
        f"base image {reference!r} has no manifest for platform {wanted} "
        f"(it has: {', '.join(found) or 'none'})",
        hint="pass --platform with one of those",
    )


def _blob_path(root: Path, digest: str) -> Path:
    algorithm, _, value = str(digest).partition(":")
    return root / "blobs" / algorithm / value


def _layout_layer(root: Path, item: Mapping[str, Any], diff_id: str, reference: str) -> Blob:
    media_type = str(item.get("mediaType", ""))
    if media_type not in _LAYER_TYPES:
        raise BuildError(
            f"base image {reference!r}: layer {item.get('digest')} has media type {media_type!r}, which "
            f"--backend oci cannot read (expected one of {', '.join(sorted(set(_LAYER_TYPES.values())))})"
        )
    descriptor = Descriptor(_LAYER_TYPES[media_type], str(item["digest"]), int(item["size"]))
    return Blob(descriptor, path=_blob_path(root, descriptor.digest), diff_id=diff_id)


# --- registries -------------------------------------------------------------------------------


def _registry(text: str, reference: str, platform: str | None, store: BlobStore) -> BaseImage:
    from kiln.oci.registry import fetch_base, stream_layer

    remote = fetch_base(text, platform or host_os_arch())
    config, _ = _config(remote.config, reference, platform, layers=len(remote.layers))
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
        _base_cache(store, remote.config_descriptor.digest), len(layers), open_layer, describe=reference
    )
    return BaseImage(
        reference, name, remote.digest, config, remote.config_descriptor.digest, layers, files, remote
    )


def _remote_layer(blob: Blob, reference: str) -> Blob:
    media_type = blob.descriptor.media_type
    if media_type not in _LAYER_TYPES:
        raise BuildError(
            f"base image {reference!r}: layer {blob.digest} has media type {media_type!r}, which "
            "--backend oci cannot read"
        )
    return replace(blob, descriptor=replace(blob.descriptor, media_type=_LAYER_TYPES[media_type]))


def fetch_layers(base: BaseImage, store: BlobStore) -> BaseImage:
    """``base`` with every layer in the local store (downloaded once) for outputs that hold the whole
    image (a layout, an archive, ``docker load``); a no-op for bases whose layers are local."""
    if base.remote is None or all(layer.path is not None for layer in base.layers):
        return base
    from kiln.oci.registry import stream_layer

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


# --- shared -----------------------------------------------------------------------------------


def _config(
    data: bytes, reference: str, platform: str | None, *, layers: int
) -> tuple[dict[str, Any], list[str]]:
    """The parsed config and its diff ids; BuildError unless it is an image config for ``platform``
    whose diff ids match the manifest's ``layers``."""
    try:
        config = json.loads(data)
        diff_ids = [str(d) for d in config["rootfs"]["diff_ids"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildError(
            f"base image {reference!r}: its config is not an image config with rootfs.diff_ids"
        ) from exc
    if platform:
        have = "/".join(str(config.get(k)) for k in ("os", "architecture") if config.get(k))
        if have and have != "/".join(platform.split("/")[:2]):
            raise BuildError(
                f"base image {reference!r} is for {have}, not --platform {platform}",
                hint="pass the base image's platform, or a base image built for yours",
            )
    if len(diff_ids) != layers:
        raise BuildError(
            f"base image {reference!r}: its manifest lists {layers} layers, its config {len(diff_ids)}"
        )
    return dict(config), diff_ids


def _base_cache(store: BlobStore, config_digest: str) -> Path:
    return store.root / "bases" / hex_of(config_digest)
