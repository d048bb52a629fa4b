"""A model with large files, end to end: each large file is a layer of its own in both backends, and a
change to a small file re-pushes only the small-files layer to a real registry.

The model is sklearn_iris plus two 80 MiB weight files (above the 64 MiB threshold): a random
MiB at the head of each (so they differ) and sparse zeros after it, cheap on disk and to compress.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.docker_support import BASE_IMAGE
from tests.e2e.conftest import SESSION, Images, kiln
from tests.registry_support import Registry, registry  # noqa: F401

from kiln.backends.docker.builder import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MIB = 1 << 20
WEIGHTS = ("weights/decoder.bin", "weights/encoder.bin")
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def large_model(model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("large") / "model"
    shutil.copytree(model_dir("sklearn_iris"), root)
    for name in WEIGHTS:
        (root / name).parent.mkdir(exist_ok=True)
        with open(root / name, "wb") as handle:
            handle.write(os.urandom(MIB))
            handle.truncate(80 * MIB)
    (root / "weights" / "vocab.txt").write_text("a\nb\n")
    return root


def get(running: Registry, path: str, accept: str = ACCEPT) -> Any:
    request = urllib.request.Request(f"{running.url}/v2/{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def pushed_layers(running: Registry, repository: str, tag: str) -> list[tuple[str, str]]:
    """(digest, history line) of each layer of the pushed image, base layers included."""
    manifest = get(running, f"{repository}/manifests/{tag}")
    config = get(running, f"{repository}/blobs/{manifest['config']['digest']}", accept="*/*")
    made = [h.get("created_by", "") for h in config["history"] if not h.get("empty_layer")]
    return list(zip([layer["digest"] for layer in manifest["layers"]], made, strict=True))


def uploaded(running: Registry, since: int) -> set[str]:
    """The digests of the blobs uploaded since ``since``, as the registry logged them."""
    uris = [r.uri for r in running.blob_uploads(since)]
    return {urllib.parse.unquote(uri.split("digest=")[1].split("&")[0]) for uri in uris}


def model_layers(layers: list[tuple[str, str]]) -> tuple[list[str], str]:
    """(digests of the large files' layers, digest of the small-files layer), by their history lines:
    ``kiln: model file X`` / ``kiln: model`` (OCI backend), ``COPY ... /opt/ml/model/weights/X`` /
    ``COPY model /opt/ml/model`` (Docker backend)."""
    large = [d for d, line in layers if "kiln: model file " in line or " /opt/ml/model/weights/" in line]
    small = [d for d, line in layers if line == "kiln: model" or "COPY model /opt/ml/model" in line]
    assert len(large) == len(WEIGHTS) and len(small) == 1, layers
    return large, small[0]


def only_the_small_files_layer_was_sent(
    first: list[tuple[str, str]], second: list[tuple[str, str]], running: Registry, since: int
) -> None:
    """The large files' layers are the same in both images, the small-files layer is not, and the
    push sent that layer but no layer the first image had (what else it sent is the config, and an
    SBOM that names the changed file: its attached document, or a layer of its own)."""
    (large_1, small_1), (large_2, small_2) = model_layers(first), model_layers(second)
    assert large_2 == large_1 and small_2 != small_1
    sent = uploaded(running, since)
    assert small_2 in sent and not sent & {digest for digest, _ in first}


def build(tag: str, model: Path, *args: str) -> str:
    result = kiln("build", "-m", str(model), "-n", tag, "--base-image", BASE_IMAGE, *args)
    if result.returncode != 0:
        pytest.fail(f"kiln build {tag} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def change_a_small_file(model: Path, text: str) -> None:
    (model / "weights" / "vocab.txt").write_text(text)


def test_oci_backend_a_layer_per_large_file_and_a_small_change_pushes_one_layer(
    large_model: Path,
    registry: Registry,  # noqa: F811
    tmp_path: Path,
    docker_builder: DockerBuilder,
) -> None:
    archive = tmp_path / "base.tar"
    saved = docker_builder.cli.run(["save", "--output", str(archive), BASE_IMAGE], timeout=600)
    assert saved.returncode == 0, saved.stderr
    repository = f"kiln-e2e/large-oci-{SESSION}"
    oci = ("--backend", "oci", "--base-image", f"docker-archive:{archive}")
    build("large-oci:1", large_model, *oci, "--push", f"{registry.host}/{repository}:1")
    first = pushed_layers(registry, repository, "1")
    assert [line for _, line in first[-3:]] == [
        "kiln: model file weights/decoder.bin (80 MiB)",
        "kiln: model file weights/encoder.bin (80 MiB)",
        "kiln: model",
    ]
    change_a_small_file(large_model, "a\nb\nc\n")
    mark = registry.mark()
    build("large-oci:2", large_model, *oci, "--push", f"{registry.host}/{repository}:2")
    only_the_small_files_layer_was_sent(first, pushed_layers(registry, repository, "2"), registry, mark)


def test_docker_backend_a_layer_per_large_file_and_a_small_change_pushes_one_layer(
    large_model: Path,
    registry: Registry,  # noqa: F811
    images: Images,
    docker_builder: DockerBuilder,
) -> None:
    repository = f"kiln-e2e/large-docker-{SESSION}"
    tag = f"kiln-e2e/large-docker:{SESSION}"
    images.tags.append(tag)
    change_a_small_file(large_model, "a\nb\n")
    build(tag, large_model, "--push", f"{registry.host}/{repository}:1")
    history = docker_builder.cli.run(["history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", tag])
    copies = [line for line in history.stdout.splitlines() if "/opt/ml/model" in line]
    assert len(copies) == 3, history.stdout  # newest first: the small files, then a layer per large file
    assert "COPY model /opt/ml/model" in copies[0] and copies[0].split("\t")[0].endswith("kB")
    for line, name in zip(copies[1:], reversed(WEIGHTS), strict=True):
        assert line.startswith("83.9MB\t") and f"/opt/ml/model/{name}" in line, line
    first = pushed_layers(registry, repository, "1")
    change_a_small_file(large_model, "a\nb\nd\n")
    mark = registry.mark()
    build(tag, large_model, "--push", f"{registry.host}/{repository}:2")
    only_the_small_files_layer_was_sent(first, pushed_layers(registry, repository, "2"), registry, mark)


def test_classic_builder_gets_each_large_file_with_the_images_mode(
    large_model: Path, images: Images, docker_builder: DockerBuilder, tmp_path: Path
) -> None:
    """No ``COPY --chmod`` without BuildKit: a large file whose host mode is not the image's is copied
    into the context with the right one (the others are hard links), and the image has 0644 for both."""
    model = tmp_path / "model"
    shutil.copytree(large_model, model)
    (model / WEIGHTS[0]).chmod(0o600)
    tag = f"kiln-e2e/large-classic:{SESSION}"
    images.tags.append(tag)
    result = kiln(
        "build", "-m", str(model), "-n", tag, "--base-image", BASE_IMAGE, env={"KILN_BUILDKIT": "false"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    history = docker_builder.cli.run(["history", "--no-trunc", "--format", "{{.CreatedBy}}", tag])
    assert sum("/opt/ml/model/weights/" in line for line in history.stdout.splitlines()) == len(WEIGHTS)
    modes = docker_builder.cli.run(
        ["run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", "stat -c '%a %U' /opt/ml/model/weights/*.bin"]
    )
    assert modes.stdout.split("\n")[:2] == ["644 root", "644 root"], modes.stdout + modes.stderr
