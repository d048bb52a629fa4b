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


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for ``pytest -n N --dist loadgroup`` (pytest-xdist; scripts/test runs the suite so).

    Every test that drives Docker runs in one worker, in collection order (one build at a time,
    the e2e images shared as in a serial run); the other tests run in the other workers, a
    top-level directory at a time, so its session and module fixtures are made once.
    """
    for item in items:
        directory = item.nodeid.split("/")[1] if item.nodeid.count("/") > 1 else "top"
        group = "docker" if item.get_closest_marker("docker") or directory == "e2e" else directory
        item.add_marker(pytest.mark.xdist_group(group))
