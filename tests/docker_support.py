"""Docker fixtures shared by tests/image, tests/backends and tests/e2e (import them in a conftest)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.backends.docker.builder import DockerBuilder

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


# What the build cache may keep between test modules: each module builds its own images, and a
# whole run's cache (tens of GB) once filled a CI machine's disk.
KEEP_BUILD_CACHE = "3GB"


def free_disk(builder: DockerBuilder) -> None:
    """Remove dangling images and shrink the build cache to ``KEEP_BUILD_CACHE`` (most recent kept)."""
    # Older than 10 minutes: the classic builder's newest image of a build in another worker is
    # dangling too until that build tags its result.
    builder.cli.run(["image", "prune", "--force", "--filter", "until=10m"], timeout=300)
    builder.cli.run(["builder", "prune", "--force", "--keep-storage", KEEP_BUILD_CACHE], timeout=600)


def unique_tag(prefix: str = "kiln-test/t") -> str:
    return f"{prefix}:{uuid.uuid4().hex[:10]}"


def assert_not_in_image(builder: DockerBuilder, tag: str, needle: str, workdir: Path) -> int:
    """``needle`` is in no file or file name of any layer of ``tag``, nor its config or history.

    Returns how many layers were scanned (``docker save`` and every layer tar read whole).
    """
    import tarfile

    archive = workdir / f"saved-{uuid.uuid4().hex[:8]}.tar"
    saved = builder.cli.run(["save", "--output", str(archive), tag], timeout=600)
    assert saved.returncode == 0, saved.stderr
    secret = needle.encode()
    scanned = 0
    try:
        with tarfile.open(archive) as outer:
            for member in outer.getmembers():
                handle = outer.extractfile(member) if member.isfile() else None
                if handle is None:
                    continue
                if not member.name.endswith("layer.tar"):
                    assert secret not in handle.read(), f"{needle!r} in {member.name}"
                    continue
                with tarfile.open(fileobj=handle) as layer:
                    for entry in layer.getmembers():
                        assert secret not in entry.name.encode(), f"{needle!r} in the name {entry.name}"
                        content = layer.extractfile(entry) if entry.isfile() else None
                        if content is not None:
                            assert secret not in content.read(), f"{needle!r} in {member.name}:{entry.name}"
                scanned += 1
    finally:
        archive.unlink(missing_ok=True)
    history = builder.cli.run(["history", "--no-trunc", tag]).stdout
    assert needle not in history
    return scanned
