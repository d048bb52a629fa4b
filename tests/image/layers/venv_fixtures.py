"""Fixtures for the host-side installers' tests: the test base's real root filesystem (``docker
export``, once per session), the sklearn_iris model's real locked environment, images layered from
kiln's trees. Test modules load them with ``pytest_plugins = ["tests.image.layers.venv_fixtures"]``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.docker_support import BASE_IMAGE, docker_builder  # noqa: F401
from tests.image.layers.venv_support import IrisEnv, LayeredImage, RootDirectory, docker

from kiln.backends.docker.builder import DockerBuilder
from kiln.env.resolve import resolve_env
from kiln.env.spec import TargetPlatform
from kiln.image.base import plan_python, requested_python
from kiln.image.probe import BaseImageInfo
from kiln.image.spec import ImageOptions, build_image_spec
from kiln.model.info import read_model_info


@pytest.fixture(scope="session")
def base_rootfs(docker_builder: DockerBuilder, tmp_path_factory: pytest.TempPathFactory) -> RootDirectory:  # noqa: F811
    """kiln-test/python:3.11-slim's filesystem, from ``docker export`` (once per session)."""
    root = tmp_path_factory.mktemp("base-rootfs")
    created = docker("create", BASE_IMAGE)
    container = created.stdout.strip()
    try:
        exported = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(root)], stdin=exported.stdout, check=True)
        assert exported.wait() == 0
    finally:
        docker("rm", container)
    return RootDirectory(root)


@pytest.fixture(scope="session")
def base_info(docker_builder: DockerBuilder) -> BaseImageInfo:  # noqa: F811
    return docker_builder.probe(BASE_IMAGE)


@pytest.fixture(scope="session")
def iris_env(
    model_dir: Callable[[str], Path], base_info: BaseImageInfo, tmp_path_factory: pytest.TempPathFactory
) -> IrisEnv:
    """Resolved like ``kiln build`` does (kiln.api), with the user's kiln cache."""
    path = model_dir("sklearn_iris")
    model = read_model_info(path)
    plan = plan_python("virtualenv", requested_python(model), base_info)
    target = TargetPlatform(
        python_version=plan.version, os_arch=base_info.os_arch, glibc=base_info.glibc or "2.36"
    )
    env = resolve_env(
        model, env_manager="virtualenv", target=target, work_dir=tmp_path_factory.mktemp("iris-env")
    )
    spec = build_image_spec(model, env, base_info, plan, ImageOptions(base_image=BASE_IMAGE))
    return IrisEnv(path, env, spec, base_info)


@pytest.fixture
def layered_image(tmp_path: Path) -> Iterator[LayeredImage]:
    """Images ``FROM`` the base with kiln's trees copied over ``/`` (like layers); removed afterwards."""
    made = LayeredImage(tmp_path)
    yield made
    for tag in made.tags:
        docker("image", "rm", "--force", tag)
