"""``kiln generate-dockerfile``: its context builds with plain ``docker build`` into the same image."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.docker_support import BASE_IMAGE
from tests.e2e.conftest import SESSION, Built, Images, kiln

from kiln.backends.docker.builder import DockerBuilder


@pytest.mark.docker
@pytest.mark.slow
def test_generated_context_builds_the_same_layers(
    images: Images,
    docker_builder: DockerBuilder,
    iris_uv: Built,
    model_dir: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    out = tmp_path / "ctx"
    model = str(model_dir("sklearn_iris"))
    result = kiln(
        "generate-dockerfile", "-m", model, "-d", str(out), "--env-manager", "uv", "--base-image", BASE_IMAGE
    )
    assert result.returncode == 0, result.stderr
    assert f"Wrote {out / 'Dockerfile'}" in result.stdout
    dockerfile = (out / "Dockerfile").read_text()
    assert "--mount" not in dockerfile  # any builder can build it
    # A user builds it with the plain classic builder; kiln built iris_uv the same way.
    tag = f"kiln-e2e/generated:{SESSION}"
    images.tags.append(tag)
    built = subprocess.run(
        [docker_builder.cli.binary, "build", "-q", "-t", tag, str(out)],
        env={**docker_builder.cli.env(), "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    generated = docker_builder.inspect(tag)
    original = docker_builder.inspect(iris_uv.tag)
    assert generated is not None and original is not None
    # The same image config (labels hold the lock digest, model URI and signature) and layout.
    # Layer ids are not compared: the classic builder's cache may pick another equal-content
    # intermediate image, so identical steps can give layers with other file times.
    for key in (
        "Labels",
        "Entrypoint",
        "User",
        "Env",
        "ExposedPorts",
        "Healthcheck",
        "StopSignal",
        "WorkingDir",
    ):
        assert generated["Config"][key] == original["Config"][key], key
    # kiln build adds the SBOM as one more layer; a generated context has none.
    assert len(generated["RootFS"]["Layers"]) == len(original["RootFS"]["Layers"]) - 1


def test_without_docker_the_default_base_is_assumed(model_dir: Callable[[str], Path], tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    result = kiln(
        "generate-dockerfile",
        "-m",
        str(model_dir("sklearn_iris")),
        "-d",
        str(out),
        env={"DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    assert result.returncode == 0, result.stderr
    assert "assuming python:3.11-slim holds Python 3.11" in result.stderr
    dockerfile = (out / "Dockerfile").read_text()
    assert "FROM python:3.11-slim AS image" in dockerfile
    assert (out / "kiln" / "requirements.lock").is_file() and (out / "model" / "MLmodel").is_file()


def test_without_docker_another_base_cannot_be_inspected(
    model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    result = kiln(
        "generate-dockerfile",
        "-m",
        str(model_dir("sklearn_iris")),
        "-d",
        str(tmp_path / "ctx"),
        "--base-image",
        "registry.example.com/custom:1",
        env={"DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        "Error: cannot inspect base image 'registry.example.com/custom:1' without a Docker engine"
        in result.stderr
    )


@pytest.mark.slow
def test_model_agnostic_from_a_requirements_file(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six==1.16.0\n")
    out = tmp_path / "ctx"
    result = kiln(
        "generate-dockerfile",
        "-d",
        str(out),
        "--requirements",
        str(requirements),
        env={"DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    assert result.returncode == 0, result.stderr
    dockerfile = (out / "Dockerfile").read_text()
    assert "KILN_MODEL_AGNOSTIC=true" in dockerfile and "COPY model" not in dockerfile
    assert "six==1.16.0" in (out / "kiln" / "requirements.lock").read_text()
    assert not (out / "model").exists()
