"""Small real images for the registry tests: gzip'd tar layers, a config and a manifest.

Test-side assembly only (the product's writer is kiln.image.oci): enough for a registry and
``docker pull`` to accept the result. ``saved_base`` turns ``docker save`` of the local base
image into layer blobs, so a pushed image can also be run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from kiln.oci.types import (
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_MANIFEST,
    Blob,
    Descriptor,
    Image,
)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _store(folder: Path, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / hashlib.sha256(data).hexdigest()
    path.write_bytes(data)
    return path


def layer(folder: Path, files: dict[str, bytes]) -> Blob:
    """A gzip'd tar layer holding ``files`` (path inside the image -> bytes), written to ``folder``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return compressed_layer(folder, raw.getvalue())


def compressed_layer(folder: Path, tar_bytes: bytes, *, level: int = 6) -> Blob:
    gz = gzip.compress(tar_bytes, compresslevel=level, mtime=0)
    path = _store(folder, gz)
    return Blob(Descriptor(MEDIA_OCI_LAYER_GZIP, _sha256(gz), len(gz)), path=path, diff_id=_sha256(tar_bytes))


def assemble(folder: Path, layers: list[Blob], *, container_config: dict[str, Any] | None = None) -> Image:
    """An OCI image (linux/amd64) of ``layers``, base first."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": container_config or {},
        "rootfs": {"type": "layers", "diff_ids": [blob.diff_id for blob in layers]},
        "history": [{"created_by": "kiln registry test"} for _ in layers],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_blob = Blob(
        Descriptor(MEDIA_OCI_CONFIG, _sha256(config_bytes), len(config_bytes)),
        path=_store(folder, config_bytes),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": config_blob.descriptor.to_json(),
        "layers": [blob.descriptor.to_json() for blob in layers],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return Image(
        manifest=manifest_bytes,
        manifest_descriptor=Descriptor(MEDIA_OCI_MANIFEST, _sha256(manifest_bytes), len(manifest_bytes)),
        config=config_blob,
        layers=tuple(layers),
    )


def saved_base(folder: Path, image: str) -> tuple[list[Blob], dict[str, Any]]:
    """``docker save image`` as gzip'd layer blobs (base first) and the image's container config."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "saved.tar"
    subprocess.run(
        ["docker", "save", "--output", str(archive), image], check=True, capture_output=True, timeout=600
    )
    blobs = []
    with tarfile.open(archive) as saved:
        index = json.load(_member(saved, "manifest.json"))[0]
        config = json.load(_member(saved, index["Config"]))
        for name in index["Layers"]:
            blobs.append(compressed_layer(folder / "blobs", _member(saved, name).read(), level=1))
    archive.unlink()
    return blobs, config.get("config") or {}


def _member(archive: tarfile.TarFile, name: str) -> io.BufferedReader:
    handle = archive.extractfile(name)
    assert handle is not None, name
    return handle  # type: ignore[return-value]
