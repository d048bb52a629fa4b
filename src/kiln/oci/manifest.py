"""The image manifest and the assembled Image: config + layers -> canonical manifest bytes (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from kiln.oci.canonical import canonical_json
from kiln.oci.types import MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST, Blob, Descriptor, Image


def manifest_json(
    config: Descriptor, layers: Sequence[Descriptor], annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An OCI image manifest naming ``config`` and ``layers`` (base first)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    return manifest


def describe(data: bytes, media_type: str) -> Descriptor:
    return Descriptor(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def assemble(config: Blob, layers: Sequence[Blob], annotations: Mapping[str, str] | None = None) -> Image:
    """The Image for a stored config and its layers: the manifest made here, by value."""
    if config.descriptor.media_type != MEDIA_OCI_CONFIG:
        raise ValueError(f"config media type {config.descriptor.media_type!r} (expected {MEDIA_OCI_CONFIG})")
    manifest = canonical_json(manifest_json(config.descriptor, [b.descriptor for b in layers], annotations))
    return Image(
        manifest=manifest,
        manifest_descriptor=describe(manifest, MEDIA_OCI_MANIFEST),
        config=config,
        layers=tuple(layers),
    )
