"""push_image against a real docker-registry: uploads, HEAD skips, mounts, copies, digests."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from tests.backends.recording import RecordingProgress
from tests.oci.registry.conftest import repo
from tests.oci.registry.images import assemble, layer
from tests.oci.registry.servers import FaultProxy
from tests.registry_support import Registry

from kiln.errors import RegistryError, UsageError
from kiln.oci.registry import RegistryClient, fetch_base, push_image
from kiln.oci.types import Blob

pytestmark = pytest.mark.usefixtures("no_docker_config")


def test_push_uploads_every_blob_then_the_manifest_by_digest_and_tag(
    registry: Registry, tmp_path: Path
) -> None:
    image = assemble(
        tmp_path, [layer(tmp_path, {"a.txt": b"a" * 1000}), layer(tmp_path, {"b.txt": os.urandom(5000)})]
    )
    name = repo("push")
    mark = registry.mark()

    progress = RecordingProgress()

    report = push_image(image, f"{registry.host}/{name}:v1", progress=progress)

    assert report.digest == image.digest
    assert str(report.reference) == f"{registry.host}/{name}:v1@{image.digest}"
    assert set(report.digests("uploaded")) == {blob.digest for blob in image.blobs()}
    assert report.bytes_uploaded == sum(blob.descriptor.size for blob in image.blobs())
    # The registry's own log: three blob uploads, the manifest PUT by digest first, then by tag.
    assert len(registry.blob_uploads(mark)) == 3
    manifest_puts = [r.path for r in registry.requests(mark) if r.method == "PUT" and "/manifests/" in r.path]
    assert manifest_puts == [f"/v2/{name}/manifests/{image.digest}", f"/v2/{name}/manifests/v1"]
    with RegistryClient(registry.host) as client:
        served = client.get_manifest(name, "v1")
    assert served.data == image.manifest
    assert served.digest == image.digest
    assert sorted(progress.details) == sorted(
        f"{blob.digest[:19]} uploaded ({blob.descriptor.size / 1e6:.1f} MB)" for blob in image.blobs()
    )


def test_a_second_push_of_the_same_image_uploads_nothing(registry: Registry, tmp_path: Path) -> None:
    image = assemble(tmp_path, [layer(tmp_path, {"x": os.urandom(2000)})])
    target = f"{registry.host}/{repo('again')}:1"
    push_image(image, target)
    mark = registry.mark()

    again = push_image(image, target)

    assert again.digests("skipped") == tuple(blob.digest for blob in image.blobs())
    assert again.bytes_uploaded == 0
    requests = registry.requests(mark)
    assert not [r for r in requests if "/blobs/uploads/" in r.path]
    assert {r.method for r in requests if "/blobs/" in r.path} == {"HEAD"}


def test_layers_shared_with_another_repository_are_mounted(registry: Registry, tmp_path: Path) -> None:
    base = [layer(tmp_path, {"base1": os.urandom(3000)}), layer(tmp_path, {"base2": os.urandom(3000)})]
    first = repo("base")
    push_image(assemble(tmp_path, base), f"{registry.host}/{first}:1")
    remote = fetch_base(f"{registry.host}/{first}:1", "linux/amd64")
    top = layer(tmp_path, {"model": b"weights"})
    derived = assemble(tmp_path, [*remote.layers, top])
    mark = registry.mark()

    report = push_image(derived, f"{registry.host}/{repo('derived')}:1")

    assert report.digests("mounted") == tuple(blob.digest for blob in remote.layers)
    assert all(
        blob.mounted_from == f"{registry.host}/{first}" for blob in report.blobs if blob.action == "mounted"
    )
    assert set(report.digests("uploaded")) == {top.digest, derived.config.digest}
    assert report.bytes_uploaded == top.descriptor.size + derived.config.descriptor.size
    assert len(registry.mounts(mark)) == 2
    assert len(registry.blob_uploads(mark)) == 2


def test_a_base_layer_from_another_registry_is_copied(
    registry: Registry, basic_registry: Registry, tmp_path: Path, docker_config
) -> None:
    from tests.oci.registry.conftest import PASSWORD, USER

    docker_config({"auths": {basic_registry.host: {"username": USER, "password": PASSWORD}}})
    base_layer = layer(tmp_path, {"base": os.urandom(4000)})
    source = repo("source")
    push_image(assemble(tmp_path, [base_layer]), f"{registry.host}/{source}:1")
    remote = fetch_base(f"{registry.host}/{source}:1", "linux/amd64")
    image = assemble(tmp_path, [*remote.layers, layer(tmp_path, {"top": b"1"})])

    report = push_image(image, f"{basic_registry.host}/{repo('copy')}:1")

    assert report.digests("copied") == (base_layer.digest,)
    assert report.bytes_uploaded == sum(blob.descriptor.size for blob in image.blobs())


def test_a_blob_without_file_or_source_is_refused_before_any_request(
    registry: Registry, tmp_path: Path
) -> None:
    real = layer(tmp_path, {"f": b"1"})
    image = assemble(
        tmp_path, [layer(tmp_path, {"g": b"2"}), Blob(real.descriptor, path=None, diff_id=real.diff_id)]
    )
    name = repo("nofile")
    mark = registry.mark()

    with pytest.raises(RegistryError, match=f"cannot push blob {real.digest} to {registry.host}/{name}"):
        push_image(image, f"{registry.host}/{name}:1")

    assert registry.requests(mark) == []


def test_a_reference_naming_another_digest_is_refused(registry: Registry, tmp_path: Path) -> None:
    image = assemble(tmp_path, [layer(tmp_path, {"f": b"1"})])
    with pytest.raises(UsageError, match=r"names digest sha256:0{64}, but the image's manifest digest is"):
        push_image(image, f"{registry.host}/{repo()}@sha256:{'0' * 64}")


def test_registry_errors_name_registry_repository_operation_status_and_code(registry: Registry) -> None:
    name = repo("missing")
    with RegistryClient(registry.host) as client, pytest.raises(RegistryError) as caught:
        client.get_manifest(name, "nope")
    error = caught.value
    assert (error.status, error.code, error.registry, error.repository) == (
        404,
        "MANIFEST_UNKNOWN",
        registry.host,
        name,
    )
    assert error.message == (
        f"registry {registry.host}: get manifest 'nope' in repository '{name}' failed: "
        "HTTP 404 MANIFEST_UNKNOWN: manifest unknown"
    )


def test_blobs_go_up_in_parallel(registry: Registry, tmp_path: Path) -> None:
    """Four blobs, four jobs: the proxy holds each blob HEAD until all four are in flight at once."""
    image = assemble(tmp_path, [layer(tmp_path, {f"f{i}": os.urandom(1000)}) for i in range(3)])
    barrier = threading.Barrier(len(image.blobs()), timeout=20)

    def gate(method: str, path: str) -> threading.Barrier | None:
        return barrier if method == "HEAD" and "/blobs/" in path else None

    with FaultProxy(registry.host, gate=gate).running() as proxy:
        report = push_image(image, f"{proxy.host}/{repo('parallel')}:1", jobs=4)

    assert not proxy.gate_broken
    assert len(report.digests("uploaded")) == 4
