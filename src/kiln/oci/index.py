"""The OCI image index: one manifest per platform under one name (pure; canonical JSON).

``assemble_index([(image, platform), ...])`` gives an ``ImageIndex`` whose bytes depend only on
the images' manifest descriptors and platforms, in the order given, so the same per-platform
images always give the same index digest. Registries, ``docker pull`` and ``skopeo copy
--override-arch`` pick the manifest for their platform from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kiln.oci.canonical import canonical_json
from kiln.oci.manifest import describe
from kiln.oci.types import MEDIA_OCI_INDEX, Descriptor, Image

PLATFORM_KEYS = ("os", "architecture", "variant")


@dataclass(frozen=True)
class ImageIndex:
    """An image index (manifest bytes, canonical JSON) and the platform images it names."""

    manifest: bytes
    descriptor: Descriptor
    images: tuple[Image, ...]
    platforms: tuple[Mapping[str, str], ...]
    """``{"os": "linux", "architecture": "arm64", ...}`` of each image, in the same order."""

    @property
    def digest(self) -> str:
        return self.descriptor.digest


def index_json(entries: Iterable[Mapping[str, Any]], annotations: Mapping[str, str] | None = None) -> bytes:
    """An index (an image index blob, or a layout's ``index.json``) naming ``entries``, canonical."""
    value: dict[str, Any] = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": list(entries)}
    if annotations:
        value["annotations"] = dict(sorted(annotations.items()))
    return canonical_json(value)


def platform_entry(image: Image, platform: Mapping[str, str]) -> dict[str, Any]:
    """``image``'s descriptor with its platform, as an index lists it."""
    entry = image.manifest_descriptor.to_json()
    entry["platform"] = {key: platform[key] for key in PLATFORM_KEYS if platform.get(key)}
    return entry


def assemble_index(
    images: Sequence[tuple[Image, Mapping[str, str]]], annotations: Mapping[str, str] | None = None
) -> ImageIndex:
    """The index of ``images`` (each with its platform); ValueError for none or a platform twice."""
    if not images:
        raise ValueError("an image index needs at least one image")
    seen: set[str] = set()
    for _, platform in images:
        text = platform_text(platform)
        if text in seen:
            raise ValueError(f"platform {text} appears twice in one image index")
        seen.add(text)
    data = index_json([platform_entry(image, platform) for image, platform in images], annotations)
    return ImageIndex(
        manifest=data,
        descriptor=describe(data, MEDIA_OCI_INDEX),
        images=tuple(image for image, _ in images),
        platforms=tuple(dict(platform) for _, platform in images),
    )


def platform_text(platform: Mapping[str, str]) -> str:
    """``linux/arm64`` (``linux/arm/v7`` with a variant)."""
    return "/".join(platform[key] for key in PLATFORM_KEYS if platform.get(key))


def parse_platform(text: str) -> dict[str, str]:
    """``os/arch[/variant]`` as an index's platform object; ValueError for anything else."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {text!r} is not OS/ARCH[/VARIANT] (e.g. linux/amd64)")
    return dict(zip(PLATFORM_KEYS, parts))
