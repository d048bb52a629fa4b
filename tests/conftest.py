"""Shared fixtures: real MLflow models by scenario, saved once per test session; xdist groups."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures import models


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``model_dir("sklearn_iris")``: the path of that scenario's saved model (made on first use)."""
    root = tmp_path_factory.mktemp("models")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = models.save(name, root / name)
        return made[name]

    return get


@pytest.fixture(autouse=True, scope="session")
def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_TRACKING_URI", "file:///tmp/kiln-test-mlruns")


# The Docker tests run in two groups of about equal time (15-16 min each on 2 cores, measured):
# these modules in the second, the rest in the first.
SECOND_DOCKER_GROUP = frozenset(
    {
        "test_multiarch.py",
        "test_flavours_heavy.py",
        "test_generate.py",
        "test_docker_supply.py",
        "test_image.py",
        "test_agnostic.py",
        "test_openapi_image.py",
        "test_security.py",
        "test_serving.py",
        "test_rebuild.py",
    }
)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for ``pytest -n N --dist loadgroup`` (pytest-xdist; scripts/test runs the suite so).

    The tests that drive Docker run in two groups, each in one worker in collection order (the
    e2e images of a group shared as in a serial run); xdist starts the groups with the most
    tests first, so both start at once. Every other module is a group of its own and fills in.
    """
    for item in items:
        module = item.path.name
        if item.get_closest_marker("docker") or "/e2e/" in item.nodeid:
            group = "docker-b" if module in SECOND_DOCKER_GROUP else "docker-a"
        else:
            group = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
