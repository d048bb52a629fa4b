"""Docker fixtures shared by tests/image, tests/backends and tests/e2e (import them in a conftest)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.backends.docker import DockerBuilder

BASE_IMAGE = "kiln-test/python:3.11-slim"
REPO = Path(__file__).resolve().parent.parent


def ensure_base_image(cli_binary: str) -> None:
    """Make kiln-test/python:3.11-slim with scripts/make-base-image.sh when it is absent."""
    present = subprocess.run([cli_binary, "image", "inspect", BASE_IMAGE], capture_output=True, check=False)
    if present.returncode == 0:
        return
    made = subprocess.run(
        ["bash", str(REPO / "scripts" / "make-base-image.sh"), BASE_IMAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.fail(f"could not make {BASE_IMAGE}: {made.stdout[-2000:]} {made.stderr[-2000:]}")


@pytest.fixture(scope="session")
def docker_builder() -> DockerBuilder:
    """A connected DockerBuilder (BuildKit when usable) with the test base image present."""
    builder = DockerBuilder.connect()
    ensure_base_image(builder.cli.binary)
    return builder


@pytest.fixture
def image_names(docker_builder: DockerBuilder) -> Iterator[list[str]]:
    """Unique image tags for one test (append more with ``unique_tag``); removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        docker_builder.cli.run(["image", "rm", "--force", name], timeout=120)


def unique_tag(prefix: str = "kiln-test/t") -> str:
    return f"{prefix}:{uuid.uuid4().hex[:10]}"
