"""``--output oci:DIR[:TAG]``: an OCI image layout (oci-layout, index.json, blobs/sha256/...).

A new directory gets exactly one image (or one image index, for a multi-platform build); an
existing layout keeps its other images and has the one with the same
``org.opencontainers.image.ref.name`` replaced. Artifacts that refer to the image (its SBOM and
provenance) are listed in ``index.json`` too, with their ``artifactType`` and no ref name, as
ORAS and ``oras discover --oci-layout`` expect. Every file is written
to a temp name and renamed, blobs before the index that names them, so a reader never sees
an index pointing at a missing or half-written blob. Blobs are hard-linked from kiln's
blob store when it is on the same filesystem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kiln.errors import UsageError
from kiln.oci.blobstore import copy_blob, hex_of
from kiln.oci.canonical import canonical_json
from kiln.oci.index import ImageIndex, index_json
from kiln.oci.referrers import Artifact
from kiln.oci.types import Blob, Descriptor, Image

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def index_entry(
    image: Image, *, ref_name: str, image_name: str | None, platform: Mapping[str, str]
) -> dict[str, Any]:
    """``image``'s descriptor in an index.json, named ``ref_name`` (and ``image_name`` for containerd)."""
    entry = _named(image.manifest_descriptor, ref_name, image_name)
    entry["platform"] = dict(platform)
    return entry


def _named(descriptor: Descriptor, ref_name: str, image_name: str | None) -> dict[str, Any]:
    entry = descriptor.to_json()
    annotations = {REF_NAME: ref_name}
    if image_name:
        annotations[CONTAINERD_NAME] = image_name
    entry["annotations"] = annotations
    return entry


def write_layout(
    image: Image,
    dest: Path,
    *,
    ref_name: str,
    image_name: str | None = None,
    platform: Mapping[str, str],
    referrers: Sequence[Artifact] = (),
) -> None:
    """Write ``image`` into the layout at ``dest`` under ``ref_name``; every blob must have a local path."""
    entry = index_entry(image, ref_name=ref_name, image_name=image_name, platform=platform)
    _write(dest, [image], {}, entry, ref_name, referrers)


def write_index_layout(
    index: ImageIndex,
    dest: Path,
    *,
    ref_name: str,
    image_name: str | None = None,
    referrers: Sequence[Artifact] = (),
) -> None:
    """Write a multi-platform image: every platform image, the image index, and ``index.json`` naming the
    image index ``ref_name`` (``skopeo copy --override-arch``, ``crane``, ``docker`` pick from it)."""
    entry = _named(index.descriptor, ref_name, image_name)
    _write(dest, index.images, {index.digest: index.manifest}, entry, ref_name, referrers)


def _write(
    dest: Path,
    images: Sequence[Image],
    manifests: dict[str, bytes],
    entry: dict[str, Any],
    ref_name: str,
    referrers: Sequence[Artifact],
) -> None:
    """Blobs, then manifests, then ``index.json``: ``entry`` replaces the entry named ``ref_name``."""
    existing = _existing_entries(dest)
    blobs_dir = dest / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    for blob in [*(b for image in images for b in image.blobs()), *(b for a in referrers for b in a.blobs)]:
        _put_blob(blob, blobs_dir)
    everything = {image.digest: image.manifest for image in images}
    everything.update({item.digest: item.manifest for item in referrers})
    everything.update(manifests)  # the index last: it names the others
    for digest, data in everything.items():
        manifest_path = blobs_dir / hex_of(digest)
        if not manifest_path.exists():
            atomic_write(manifest_path, data)
    atomic_write(dest / "oci-layout", canonical_json(LAYOUT_VERSION))
    ours = {item.digest for item in referrers}
    kept = [
        e
        for e in existing
        if (e.get("annotations") or {}).get(REF_NAME) != ref_name and e.get("digest") not in ours
    ]
    atomic_write(dest / "index.json", index_json([*kept, entry, *(item.entry() for item in referrers)]))


def _existing_entries(dest: Path) -> list[dict[str, Any]]:
    if not dest.exists():
        return []
    if not dest.is_dir():
        raise UsageError(f"--output oci:{dest} is a file (expected a directory for an OCI image layout)")
    if not any(dest.iterdir()):
        return []
    index = dest / "index.json"
    if not (dest / "oci-layout").is_file() or not index.is_file():
        raise UsageError(
            f"--output oci:{dest}: the directory is not empty and is not an OCI image layout "
            "(no oci-layout and index.json)",
            hint="name a new or empty directory, or an existing OCI layout to add the image to",
        )
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        return [dict(item) for item in data.get("manifests") or []]
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise UsageError(f"--output oci:{dest}: its index.json cannot be read ({exc})") from exc


def _put_blob(blob: Blob, blobs_dir: Path) -> None:
    target = blobs_dir / hex_of(blob.digest)
    if target.exists() and target.stat().st_size == blob.descriptor.size:
        return
    if blob.path is None:
        raise ValueError(f"blob {blob.digest} has no local copy to write into a layout")
    copy_blob(blob.path, target)


def atomic_write(path: Path, data: bytes) -> None:
    """``data`` at ``path`` through a temp file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
