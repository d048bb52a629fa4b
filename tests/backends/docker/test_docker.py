"""The docker backend against the real engine: BuildKit detection, both builders, failures, no daemon."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.backends.recording import RecordingProgress
from tests.docker_support import BASE_IMAGE, unique_tag

from kiln.backends.docker.builder import ContextBuild, DockerBuilder
from kiln.backends.docker.cli import DockerCli, find_docker
from kiln.errors import BuildError, DockerUnavailableError

pytestmark = pytest.mark.docker

DOCKERFILE = f"""\
FROM {BASE_IMAGE} AS stage
COPY input.txt /input.txt
RUN echo "built from $(cat /input.txt)" > /output.txt
FROM {BASE_IMAGE}
COPY --from=stage /output.txt /output.txt
LABEL io.kiln.test=1
"""


def _context(tmp_path: Path, dockerfile: str, text: str = "one") -> Path:
    context = tmp_path / "ctx"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    (context / "input.txt").write_text(text)
    return context


def _classic(builder: DockerBuilder) -> DockerBuilder:
    return DockerBuilder(DockerCli(builder.cli.binary, "classic", builder.cli.environ))


def test_buildkit_is_detected_and_used(
    docker_builder: DockerBuilder, tmp_path: Path, image_names: list[str]
) -> None:
    # On this machine /usr/local/bin/docker has no buildx but /usr/bin/docker talks to the
    # engine's BuildKit: detection must find the latter rather than fall back to classic.
    assert docker_builder.buildkit, f"BuildKit not detected with {docker_builder.cli}"
    dockerfile = f"FROM {BASE_IMAGE}\nRUN --mount=type=cache,target=/root/.cache echo cached-mount > /x\n"
    tag = unique_tag()
    image_names.append(tag)
    built = docker_builder.build_context(
        ContextBuild(_context(tmp_path, dockerfile), tag), RecordingProgress()
    )
    assert built.builder == "buildkit" and built.image_id.startswith("sha256:")


@pytest.mark.parametrize("mode", ["buildkit", "classic"])
def test_build_reports_steps_and_cache_hits(
    docker_builder: DockerBuilder, tmp_path: Path, image_names: list[str], mode: str
) -> None:
    builder = docker_builder if mode == "buildkit" else _classic(docker_builder)
    context = _context(tmp_path, DOCKERFILE, text=f"{mode}-{os.getpid()}-{tmp_path.name}")
    tag = unique_tag()
    image_names.append(tag)
    first = builder.build_context(ContextBuild(context, tag), RecordingProgress())
    progress = RecordingProgress()
    again = builder.build_context(ContextBuild(context, tag), progress)
    assert again.image_id == first.image_id
    assert len(first.layers) == len(again.layers) >= 2
    runs = [step for step in first.steps if "RUN echo" in step.name]
    assert len(runs) == 1 and not runs[0].cached
    assert all(step.cached for step in again.steps if "RUN" in step.name or "COPY" in step.name)
    assert any(cached for _name, cached in progress.steps)
    out = builder.cli.run(["run", "--rm", tag, "cat", "/output.txt"])
    assert out.stdout.strip() == f"built from {context.joinpath('input.txt').read_text()}"


@pytest.mark.parametrize("mode", ["buildkit", "classic"])
def test_a_failing_step_is_named_with_its_log_tail(
    docker_builder: DockerBuilder, tmp_path: Path, image_names: list[str], mode: str
) -> None:
    builder = docker_builder if mode == "buildkit" else _classic(docker_builder)
    dockerfile = f"FROM {BASE_IMAGE}\nRUN echo first-line && echo the-reason-it-failed >&2 && exit 3\n"
    tag = unique_tag()
    image_names.append(tag)
    with pytest.raises(BuildError) as caught:
        builder.build_context(ContextBuild(_context(tmp_path, dockerfile), tag), RecordingProgress())
    error = caught.value
    assert "failed at step" in error.message and "RUN echo first-line" in error.message
    assert error.log_tail is not None and "the-reason-it-failed" in error.log_tail
    assert "last lines of the log" in error.format()


def test_no_daemon_is_docker_unavailable() -> None:
    environ = dict(os.environ, DOCKER_HOST="unix:///nonexistent.sock")
    with pytest.raises(DockerUnavailableError) as caught:
        find_docker(environ)
    text = caught.value.format()
    assert "no Docker engine answers at unix:///nonexistent.sock" in text
    assert "start the Docker engine" in text


def test_missing_docker_client_is_docker_unavailable() -> None:
    environ = dict(os.environ, KILN_DOCKER="/nonexistent/docker")
    with pytest.raises(DockerUnavailableError, match="is not an executable docker client"):
        find_docker(environ)


def test_kiln_buildkit_false_forces_the_classic_builder() -> None:
    cli = find_docker(dict(os.environ, KILN_BUILDKIT="false"))
    assert cli.mode == "classic" and not cli.buildkit
