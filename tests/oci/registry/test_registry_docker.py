"""A pushed image is one Docker pulls and runs: the local base image, saved, pushed, pulled back."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.docker_support import BASE_IMAGE, ensure_base_image
from tests.oci.registry.conftest import repo
from tests.oci.registry.images import assemble, layer, saved_base
from tests.registry_support import Registry

from kiln.oci.registry import push_image
from kiln.oci.types import Blob

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.usefixtures("no_docker_config")]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Blob], dict[str, Any]]:
    """The local base image's layers as gzip'd blobs, and its container config."""
    ensure_base_image("docker")
    return saved_base(tmp_path_factory.mktemp("saved-base"), BASE_IMAGE)


@pytest.fixture
def pulled() -> Iterator[list[str]]:
    """Image references this test pulled into the engine; removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(
            ["docker", "image", "rm", "--force", name], capture_output=True, check=False, timeout=120
        )


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=600)


def test_docker_pulls_and_runs_what_kiln_pushed(
    registry: Registry, base: tuple[list[Blob], dict[str, Any]], tmp_path: Path, pulled: list[str]
) -> None:
    base_layers, container_config = base
    name = repo("pulled")
    image = assemble(
        tmp_path,
        [*base_layers, layer(tmp_path, {"srv/hello.txt": b"pushed by kiln\n"})],
        container_config=container_config,
    )
    target = f"{registry.host}/{name}:1"
    mark = registry.mark()

    report = push_image(image, target)

    assert len(registry.blob_uploads(mark)) == len(image.blobs()) == len(report.digests("uploaded"))
    pulled.append(target)
    pull = _docker("pull", target)
    assert pull.returncode == 0, pull.stderr
    assert f"Digest: {image.digest}" in pull.stdout
    run = _docker("run", "--rm", target, "python3", "-c", "print(open('/srv/hello.txt').read(), end='')")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "pushed by kiln\n"
    inspected = _docker("image", "inspect", "--format", "{{.Id}}", target)
    assert inspected.stdout.strip() == image.image_id

    # A model-only change: only the new top layer and the config go up; the base is skipped.
    changed = assemble(
        tmp_path,
        [*base_layers, layer(tmp_path, {"srv/hello.txt": b"changed\n"})],
        container_config=container_config,
    )
    mark = registry.mark()
    second = push_image(changed, f"{registry.host}/{name}:2")
    assert set(second.digests("uploaded")) == {changed.layers[-1].digest, changed.config.digest}
    assert set(second.digests("skipped")) == {blob.digest for blob in base_layers}
    assert len(registry.blob_uploads(mark)) == 2
    assert second.bytes_uploaded == changed.layers[-1].descriptor.size + changed.config.descriptor.size
