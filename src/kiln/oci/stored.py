"""An image as an OCI layout stores it, read back whole for ``kiln push oci:DIR[:TAG]``: the image or
image index ``TAG`` names, every platform image under it, and the artifacts that refer to them.

Blobs stay where they are (the push reads them from the layout); every manifest's digest is
checked against its bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.errors import UsageError
from kiln.oci.index import ImageIndex
from kiln.oci.layout import REF_NAME
from kiln.oci.referrers import Artifact
from kiln.oci.types import INDEX_MEDIA_TYPES, MEDIA_OCI_MANIFEST, Blob, Descriptor, Image


@dataclass(frozen=True)
class StoredImage:
    """What a layout holds under one name: one image, or an index and its images; and their referrers."""

    images: tuple[tuple[Image, dict[str, str]], ...]
    index: ImageIndex | None
    referrers: tuple[Artifact, ...]


def read_stored(root: Path, ref_name: str | None) -> StoredImage:
    """The image (or index) named ``ref_name`` in the layout at ``root`` (the only one when None)."""
    try:
        entries = json.loads((root / "index.json").read_text(encoding="utf-8")).get("manifests") or []
    except (OSError, ValueError, AttributeError) as exc:
        raise UsageError(f"oci:{root} is not a readable OCI image layout (index.json: {exc})") from exc
    entry = _pick(root, [e for e in entries if not e.get("artifactType")], ref_name)
    top = _read(root, _descriptor(entry))
    if entry.get("mediaType") in INDEX_MEDIA_TYPES:
        body = json.loads(top)
        items = [(item, _image(root, _descriptor(item))) for item in body.get("manifests") or []]
        images = tuple((image, dict(item.get("platform") or {})) for item, image in items)
        descriptor = Descriptor(str(entry["mediaType"]), str(entry["digest"]), len(top))
        index = ImageIndex(top, descriptor, tuple(i for i, _ in images), tuple(p for _, p in images))
    else:
        image = _image(root, _descriptor(entry))
        images, index = ((image, dict(entry.get("platform") or {})),), None
    subjects = {image.digest for image, _ in images}
    referrers = tuple(
        found
        for item in entries
        if item.get("artifactType")
        for found in [_artifact(root, item)]
        if found.subject.digest in subjects
    )
    return StoredImage(images, index, referrers)


def _pick(root: Path, entries: list[dict[str, Any]], ref_name: str | None) -> dict[str, Any]:
    names = [str((e.get("annotations") or {}).get(REF_NAME, "")) for e in entries]
    if ref_name is None and len(entries) == 1:
        return entries[0]
    for entry, name in zip(entries, names):
        if ref_name is not None and name == ref_name:
            return entry
    listed = ", ".join(n for n in names if n) or "none named"
    if ref_name is None:
        raise UsageError(f"oci:{root} holds {len(entries)} images; name one with oci:DIR:TAG ({listed})")
    raise UsageError(f"oci:{root} has no image named {ref_name!r} (it has: {listed})")


def _descriptor(item: dict[str, Any]) -> Descriptor:
    return Descriptor(
        str(item.get("mediaType") or MEDIA_OCI_MANIFEST), str(item["digest"]), int(item["size"])
    )


def _blob(root: Path, descriptor: Descriptor) -> Blob:
    path = root / "blobs" / descriptor.digest.replace(":", "/", 1)
    if not path.is_file():
        raise UsageError(f"oci:{root} lacks blob {descriptor.digest} ({descriptor.media_type})")
    return Blob(descriptor, path=path)


def _read(root: Path, descriptor: Descriptor) -> bytes:
    data = _blob(root, descriptor).path.read_bytes()  # type: ignore[union-attr]
    if "sha256:" + hashlib.sha256(data).hexdigest() != descriptor.digest:
        raise UsageError(
            f"oci:{root}: blob {descriptor.digest} does not match its digest (the layout is corrupt)"
        )
    return data


def _image(root: Path, descriptor: Descriptor) -> Image:
    data = _read(root, descriptor)
    body = json.loads(data)
    layers = tuple(_blob(root, _descriptor(item)) for item in body.get("layers") or [])
    return Image(data, descriptor, _blob(root, _descriptor(body["config"])), layers)


def _artifact(root: Path, item: dict[str, Any]) -> Artifact:
    descriptor = _descriptor(item)
    data = _read(root, descriptor)
    body = json.loads(data)
    blobs = (
        _blob(root, _descriptor(body["config"])),
        *(_blob(root, _descriptor(layer)) for layer in body.get("layers") or []),
    )
    subject = _descriptor(body["subject"])
    notes = tuple(sorted((item.get("annotations") or {}).items()))
    return Artifact(data, descriptor, str(item["artifactType"]), subject, blobs, notes)
