"""``--output oci:DIR[:TAG]``: an OCI image layout (oci-layout, index.json, blobs/sha256/...).

A new directory gets exactly one image; an existing layout keeps its other images and has
the one with the same ``org.opencontainers.image.ref.name`` replaced. Every file is written
to a temp name and renamed, blobs before the index that names them, so a reader never sees
an index pointing at a missing or half-written blob. Blobs are hard-linked from kiln's
blob store when it is on the same filesystem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kiln.errors import UsageError
from kiln.oci.blobstore import copy_blob, hex_of
from kiln.oci.canonical import canonical_json
from kiln.oci.types import MEDIA_OCI_INDEX, Blob, Image

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def index_entry(
    image: Image, *, ref_name: str, image_name: str | None, platform: Mapping[str, str]
) -> dict[str, Any]:
    """``image``'s descriptor in an index.json, named ``ref_name`` (and ``image_name`` for containerd)."""
    entry = image.manifest_descriptor.to_json()
    annotations = {REF_NAME: ref_name}
    if image_name:
        annotations[CONTAINERD_NAME] = image_name
    entry["annotations"] = annotations
    entry["platform"] = dict(platform)
    return entry


def index_json(entries: Iterable[Mapping[str, Any]]) -> bytes:
    return canonical_json({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": list(entries)})


def write_layout(
    image: Image,
    dest: Path,
    *,
    ref_name: str,
    image_name: str | None = None,
    platform: Mapping[str, str],
) -> None:
    """Write ``image`` into the layout at ``dest`` under ``ref_name``; every blob must have a local path."""
    existing = _existing_entries(dest)
    blobs_dir = dest / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    for blob in image.blobs():
        _put_blob(blob, blobs_dir)
    manifest_path = blobs_dir / hex_of(image.digest)
    if not manifest_path.exists():
        atomic_write(manifest_path, image.manifest)
    atomic_write(dest / "oci-layout", canonical_json(LAYOUT_VERSION))
    kept = [e for e in existing if (e.get("annotations") or {}).get(REF_NAME) != ref_name]
    ours = index_entry(image, ref_name=ref_name, image_name=image_name, platform=platform)
    atomic_write(dest / "index.json", index_json([*kept, ours]))


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
