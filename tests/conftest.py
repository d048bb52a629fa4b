"""Shared fixtures: real MLflow models by scenario, saved once per test session."""

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
