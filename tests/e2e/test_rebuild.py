"""Changing only the model's weights rebuilds only the model layer: measured, not assumed."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.backends.recording import RecordingProgress
from tests.e2e.conftest import Images

from kiln import api
from kiln.backends.docker import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _retrain(model: Path) -> None:
    """Overwrite the weights file with a differently trained model of the same kind."""
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris(as_frame=True)
    retrained = LogisticRegression(C=0.01, max_iter=500).fit(iris.data, iris.target)
    scratch = model.parent / "retrained"
    mlflow.sklearn.save_model(retrained, str(scratch))
    weights = model / "model.skops"
    before = weights.read_bytes()
    shutil.copyfile(scratch / "model.skops", weights)
    assert weights.read_bytes() != before


def test_weights_change_reuses_every_layer_below_the_model(
    images: Images, docker_builder: DockerBuilder, model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    model = tmp_path / "iris"
    shutil.copytree(model_dir("sklearn_iris"), model)
    tag = f"kiln-e2e/rebuild:{uuid.uuid4().hex[:10]}"
    images.tags.append(tag)
    options = {"name": tag, "base_image": "kiln-test/python:3.11-slim"}
    first = api.build(model, progress=RecordingProgress(), **options).image
    _retrain(model)
    progress = RecordingProgress()
    second = api.build(model, progress=progress, **options).image

    assert second.image_id != first.image_id
    assert len(second.layers) == len(first.layers)
    assert second.layers[:-1] == first.layers[:-1], "a layer below the model was rebuilt"
    assert second.layers[-1] != first.layers[-1]
    rebuilt = [step.name for step in second.steps if not step.cached and step.name.startswith("[")]
    assert rebuilt == [next(s.name for s in second.steps if "COPY model" in s.name)], rebuilt
