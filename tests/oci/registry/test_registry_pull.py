"""fetch_base and stream_layer against a real registry: manifests and config only, indexes, platforms."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
from tests.oci.registry.conftest import repo
from tests.oci.registry.images import assemble, layer
from tests.registry_support import Registry

from kiln.errors import RegistryError, UsageError
from kiln.oci.registry import RegistryClient, fetch_base, push_image, stream_layer
from kiln.oci.types import MEDIA_OCI_INDEX, Image

pytestmark = pytest.mark.usefixtures("no_docker_config")


def _pushed(registry: Registry, tmp_path: Path, name: str, tag: str = "1") -> Image:
    image = assemble(
        tmp_path,
        [layer(tmp_path, {"etc/os-release": b"ID=test\n"}), layer(tmp_path, {"data": os.urandom(4000)})],
        container_config={"Env": ["PATH=/usr/bin"]},
    )
    push_image(image, f"{registry.host}/{name}:{tag}")
    return image


def _push_index(registry: Registry, name: str, entries: list[tuple[Image, dict[str, str]]]) -> str:
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [
            {**image.manifest_descriptor.to_json(), "platform": platform} for image, platform in entries
        ],
    }
    data = json.dumps(index).encode()
    with RegistryClient(registry.host) as client:
        return client.put_manifest(name, "multi", data, MEDIA_OCI_INDEX)


def test_fetch_base_reads_only_the_manifest_and_the_config(registry: Registry, tmp_path: Path) -> None:
    name = repo("base")
    image = _pushed(registry, tmp_path, name)
    mark = registry.mark()

    base = fetch_base(f"{registry.host}/{name}:1", "linux/amd64")

    assert str(base.reference) == f"{registry.host}/{name}:1@{image.digest}"
    assert (base.digest, base.index_digest, base.manifest) == (image.digest, None, image.manifest)
    assert image.config.path is not None
    assert base.config == image.config.path.read_bytes()
    assert [(b.descriptor, b.diff_id, b.path, b.source) for b in base.layers] == [
        (b.descriptor, b.diff_id, None, f"{registry.host}/{name}") for b in image.layers
    ]
    blob_gets = [r.path for r in registry.requests(mark) if r.method == "GET" and "/blobs/" in r.path]
    assert blob_gets == [f"/v2/{name}/blobs/{image.config.digest}"]  # no layer was downloaded


def test_an_index_resolves_to_the_platform_manifest(registry: Registry, tmp_path: Path) -> None:
    name = repo("multi")
    amd64 = _pushed(registry, tmp_path / "a", name, "amd64")
    arm64 = _pushed(registry, tmp_path / "b", name, "arm64")
    index_digest = _push_index(
        registry,
        name,
        [
            (amd64, {"os": "linux", "architecture": "amd64"}),
            (arm64, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
            (amd64, {"os": "unknown", "architecture": "unknown"}),  # an attestation, as BuildKit adds
        ],
    )

    on_amd64 = fetch_base(f"{registry.host}/{name}:multi", "linux/amd64")
    on_arm64 = fetch_base(f"{registry.host}/{name}:multi", "linux/arm64")  # no variant: v8 is the default

    assert (on_amd64.digest, on_amd64.index_digest) == (amd64.digest, index_digest)
    assert on_arm64.digest == arm64.digest
    assert str(on_arm64.reference) == f"{registry.host}/{name}:multi@{arm64.digest}"
    with pytest.raises(RegistryError) as caught:
        fetch_base(f"{registry.host}/{name}:multi", "linux/s390x")
    assert caught.value.message == (
        f"base image {registry.host}/{name}:multi has no manifest for platform linux/s390x; "
        "it has: linux/amd64, linux/arm64/v8"
    )


def test_a_single_platform_base_for_another_platform_is_refused(registry: Registry, tmp_path: Path) -> None:
    name = repo("amd64only")
    _pushed(registry, tmp_path, name)
    with pytest.raises(RegistryError, match=r"is for linux/amd64, not linux/arm64"):
        fetch_base(f"{registry.host}/{name}:1", "linux/arm64")


def test_fetch_base_by_digest_checks_the_bytes(registry: Registry, tmp_path: Path) -> None:
    name = repo("bydigest")
    image = _pushed(registry, tmp_path, name)
    assert fetch_base(f"{registry.host}/{name}@{image.digest}", "linux/amd64").manifest == image.manifest


def test_stream_layer_gives_the_layer_bytes(registry: Registry, tmp_path: Path) -> None:
    name = repo("stream")
    image = _pushed(registry, tmp_path, name)
    base = fetch_base(f"{registry.host}/{name}:1", "linux/amd64")

    data = b"".join(stream_layer(base, base.layers[0]))

    assert "sha256:" + hashlib.sha256(data).hexdigest() == image.layers[0].digest
    with tarfile.open(fileobj=BytesIO(gzip.decompress(data))) as tar:
        handle = tar.extractfile("etc/os-release")
        assert handle is not None
        assert handle.read() == b"ID=test\n"


def test_missing_bases_and_bad_platforms_are_clear(registry: Registry) -> None:
    name = repo("absent")
    with pytest.raises(RegistryError) as caught:
        fetch_base(f"{registry.host}/{name}:1", "linux/amd64")
    assert (caught.value.status, caught.value.code) == (404, "MANIFEST_UNKNOWN")
    with pytest.raises(UsageError, match=r"invalid platform 'amd64': expected OS/ARCH\[/VARIANT\]"):
        fetch_base(f"{registry.host}/{name}:1", "amd64")
