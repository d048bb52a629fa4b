"""Small real images for the OCI writer's tests: a tiny base as a ``docker save`` archive, an image on it.

Everything is written by the code under test or by plain tarfile, with no daemon: the
tests that need Docker (a real ``docker save``, ``docker load``) live in tests/e2e.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from kiln.oci.blobstore import BlobStore
from kiln.oci.canonical import canonical_json
from kiln.oci.layer import Entry, write_layer
from kiln.oci.manifest import assemble
from kiln.oci.types import MEDIA_OCI_CONFIG, Image

BASE_TAG = "kiln-test/tiny:1"


def tar_bytes(files: dict[str, bytes | None]) -> bytes:
    """An uncompressed layer tar: ``None`` content is a directory."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755 if name.endswith("bin/sh") else 0o644
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


TINY_LAYERS = [
    tar_bytes(
        {
            "bin": None,
            "bin/sh": b"#!fake shell\n",
            "etc": None,
            "etc/os-release": b'ID=debian\nVERSION_ID="12"\n',
            "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
            "tmp": None,
        }
    ),
    tar_bytes({"etc": None, "etc/hostname": b"tiny\n"}),
]


def tiny_config(layers: list[bytes], architecture: str = "amd64") -> dict[str, Any]:
    return {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers],
        },
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": f"layer {n}"} for n in range(len(layers))
        ],
    }


def write_docker_save(path: Path, *, tags: list[str] | None = None, architecture: str = "amd64") -> Path:
    """A ``docker save`` tarball as Docker 20.10 writes it (``<id>/layer.tar``, config, manifest.json)."""
    config = canonical_json(tiny_config(TINY_LAYERS, architecture))
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    members: dict[str, bytes] = {config_name: config}
    names = []
    for number, layer in enumerate(TINY_LAYERS):
        name = f"{number:064x}/layer.tar"
        members[name] = layer
        names.append(name)
    manifest = [{"Config": config_name, "RepoTags": [BASE_TAG] if tags is None else tags, "Layers": names}]
    members["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def tiny_image(
    store: BlobStore, *, base_layers: list[Any], base_config: dict[str, Any], text: bytes = b"hi\n"
) -> Image:
    """An image of ``base_layers`` plus one layer holding /srv/hello.txt, with a minimal config."""
    made = write_layer([Entry.file("/srv/hello.txt", text)], store).layer.blob(store)
    config = dict(base_config)
    config["rootfs"] = {"type": "layers", "diff_ids": [*base_config["rootfs"]["diff_ids"], made.diff_id]}
    config["history"] = [
        *base_config.get("history", []),
        {"created": "1970-01-01T00:00:00Z", "created_by": "hi"},
    ]
    config_blob = store.put_bytes(canonical_json(config), MEDIA_OCI_CONFIG)
    return assemble(config_blob, [*base_layers, made])


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: run scripts/setup (it installs Debian's {name})")
    return found


def run(*args: str) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed: {result.stderr}"
    return result.stdout
