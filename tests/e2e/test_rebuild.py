"""Changing only the model's weights rebuilds only the model layer: measured, not assumed."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e.conftest import Images, kiln

import kiln as kiln_package
from kiln.backends.docker.builder import DockerBuilder

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


def _snapshot_kiln(dest: Path) -> dict[str, str]:
    """Run kiln from a frozen copy of its sources: the kiln wheel in both builds is then the same
    even while the working tree is being edited (this tree is shared by several developers)."""
    shutil.copytree(
        Path(kiln_package.__file__).parent, dest / "kiln", ignore=shutil.ignore_patterns("__pycache__")
    )
    return {"PYTHONPATH": str(dest)}


def test_weights_change_reuses_every_layer_below_the_model(
    images: Images, docker_builder: DockerBuilder, model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    model = tmp_path / "iris"
    shutil.copytree(model_dir("sklearn_iris"), model)
    env = _snapshot_kiln(tmp_path / "snapshot")
    tag = f"kiln-e2e/rebuild:{uuid.uuid4().hex[:10]}"
    images.tags.append(tag)
    args = ("build", "-m", str(model), "-n", tag, "--base-image", "kiln-test/python:3.11-slim")

    first = kiln(*args, env=env)
    assert first.returncode == 0, first.stderr
    layers_before = _layers(docker_builder, tag)
    _retrain(model)
    second = kiln(*args, env=env)
    assert second.returncode == 0, second.stderr
    layers_after = _layers(docker_builder, tag)

    assert len(layers_after) == len(layers_before)
    # The top layer is the SBOM (it lists the model files' digests, so it changes with them);
    # the model's layer is the one below it.
    assert layers_after[:-2] == layers_before[:-2], "a layer below the model was rebuilt"
    assert layers_after[-2] != layers_before[-2], "the model layer did not change"
    # The build output says the same: every Dockerfile step but the model's came from the cache.
    steps = re.findall(r"^    (\[\S+ \d+/\d+\] .*?)(  \(cached\))?$", second.stderr, re.MULTILINE)
    rebuilt = [name for name, cached in steps if not cached]
    assert rebuilt == ["[image 8/8] COPY model /opt/ml/model"], second.stderr
    assert len(steps) >= 8


def _layers(builder: DockerBuilder, tag: str) -> list[str]:
    details = builder.inspect(tag)
    assert details is not None
    return list(details["RootFS"]["Layers"])
