"""``oci:DIR[:TAG]``: an OCI image layout as a base image; TAG picks the ``ref.name`` (the only image
when omitted). Its blobs are used where they are."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from kiln.errors import BuildError, UsageError
from kiln.oci.basefs import base_files
from kiln.oci.blobstore import BlobStore
from kiln.oci.manifest import describe
from kiln.oci.sources.base import LAYER_TYPES, BaseImage, base_cache, checked_config, host_os_arch
from kiln.oci.transports import existing_location
from kiln.oci.types import INDEX_MEDIA_TYPES, MEDIA_OCI_CONFIG, Blob, Descriptor


def open_oci_layout(reference: str, platform: str | None, store: BlobStore) -> BaseImage:
    location = existing_location(reference)
    assert location is not None, reference  # open_base dispatched on the transport
    root, tag = location.path, location.ref
    try:
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
        descriptor = _pick_layout_entry(index, tag, reference)
        manifest_bytes = _blob_path(root, descriptor["digest"]).read_bytes()
        manifest = json.loads(manifest_bytes)
        if descriptor.get("mediaType") in INDEX_MEDIA_TYPES or manifest.get("manifests") is not None:
            descriptor = pick_platform(manifest, platform or host_os_arch(), reference)
            manifest_bytes = _blob_path(root, descriptor["digest"]).read_bytes()
            manifest = json.loads(manifest_bytes)
        config_bytes = _blob_path(root, manifest["config"]["digest"]).read_bytes()
        layer_json = list(manifest["layers"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BuildError(
            f"base image {reference!r}: {root} is not a readable OCI image layout: {exc}"
        ) from exc
    config, diff_ids = checked_config(config_bytes, reference, platform, layers=len(layer_json))
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
    files = base_files(base_cache(store, config_digest), len(layers), open_layer, describe=reference)
    digest = str(descriptor["digest"])
    return BaseImage(reference, name, digest, config, config_digest, layers, files)


def _pick_layout_entry(index: Mapping[str, Any], tag: str | None, reference: str) -> Mapping[str, Any]:
    # Artifacts listed beside an image (its SBOM, its provenance) are not images to build on.
    manifests = [m for m in index.get("manifests") or [] if not m.get("artifactType")]
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


def pick_platform(index: Mapping[str, Any], wanted: str, reference: str) -> Mapping[str, Any]:
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
    if media_type not in LAYER_TYPES:
        raise BuildError(
            f"base image {reference!r}: layer {item.get('digest')} has media type {media_type!r}, which "
            f"--backend oci cannot read (expected one of {', '.join(sorted(set(LAYER_TYPES.values())))})"
        )
    descriptor = Descriptor(LAYER_TYPES[media_type], str(item["digest"]), int(item["size"]))
    return Blob(descriptor, path=_blob_path(root, descriptor.digest), diff_id=diff_id)
