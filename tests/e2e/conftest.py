"""Images built once per session with the real CLI and dockerd, shared by the end-to-end tests.

Builds are slow on two cores, so each image is built lazily by the first test that needs
it and removed when the session ends. Every build uses the local base image
kiln-test/python:3.11-slim (made by scripts/make-base-image.sh when absent).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.docker_support import BASE_IMAGE, docker_builder, free_disk  # noqa: F401
from tests.env.conftest import PackageIndex

from kiln.backends.docker.builder import DockerBuilder

SECRET_TOKEN = "kiln-test-secret-token"
SESSION = uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Built:
    """An image built by ``kiln build``: its tag, and what the command printed."""

    tag: str
    stdout: str
    stderr: str


def kiln(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run the kiln CLI as a user would (``python -m kiln``), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "kiln", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


class Images:
    """Builds images on demand and removes them at the end of the session."""

    def __init__(self, builder: DockerBuilder) -> None:
        self.builder = builder
        self.tags: list[str] = []

    def build(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Built:
        tag = f"kiln-e2e/{name}:{SESSION}"
        self.tags.append(tag)
        result = kiln("build", "-n", tag, "--base-image", BASE_IMAGE, *args, env=env)
        if result.returncode != 0:
            pytest.fail(f"kiln build {name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return Built(tag, result.stdout, result.stderr)

    def remove_all(self) -> None:
        for tag in self.tags:
            self.builder.cli.run(["image", "rm", "--force", tag], timeout=300)


@pytest.fixture(autouse=True, scope="module")
def _free_disk_after_each_module(docker_builder: DockerBuilder) -> Iterator[None]:  # noqa: F811
    """Each module's images are gone when it ends; its build cache goes too, all but the newest."""
    yield
    free_disk(docker_builder)


@pytest.fixture(scope="session")
def images(docker_builder: DockerBuilder) -> Iterator[Images]:  # noqa: F811
    made = Images(docker_builder)
    yield made
    made.remove_all()


@pytest.fixture(scope="session")
def token_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackageIndex]:
    """A real (empty) package index on 127.0.0.1 that records the credentials it is sent."""
    index = PackageIndex(tmp_path_factory.mktemp("token-index"))
    try:
        yield index
    finally:
        index.close()


@pytest.fixture(scope="session")
def iris_venv(images: Images, model_dir: Callable[[str], Path], token_index: PackageIndex) -> Built:
    """virtualenv + BuildKit; the host's pip has an extra index whose URL carries a token (used to
    resolve and fetch on the host, next to the real index) that must not reach the image."""
    index = token_index.url(f"user:{SECRET_TOKEN}")
    return images.build("iris-venv", "-m", str(model_dir("sklearn_iris")), env={"PIP_EXTRA_INDEX_URL": index})


@pytest.fixture(scope="session")
def iris_uv(images: Images, model_dir: Callable[[str], Path]) -> Built:
    """uv, built with the classic builder (the Dockerfile must build with both), with --smoke-test."""
    return images.build(
        "iris-uv",
        "-m",
        str(model_dir("sklearn_iris")),
        "--env-manager",
        "uv",
        "--smoke-test",
        env={"KILN_BUILDKIT": "false"},
    )


@pytest.fixture(scope="session")
def iris_local(images: Images, model_dir: Callable[[str], Path]) -> Built:
    """local + BuildKit: the base image's own Python and site-packages."""
    return images.build("iris-local", "-m", str(model_dir("sklearn_iris")), "--env-manager", "local")


@pytest.fixture(scope="session")
def agnostic(images: Images, model_dir: Callable[[str], Path]) -> Built:
    """A model-agnostic image with sklearn_iris's environment."""
    return images.build("agnostic", "--env-from", str(model_dir("sklearn_iris")))
