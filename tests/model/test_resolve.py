"""resolve_model against a real MLflow tracking server: every URI form, downloads and clean-up."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kiln import contract
from kiln.model.info import read_model_info
from kiln.model.resolve import ResolvedModel, resolve_model
from tests.model.conftest import Registry, iris_frame


def _predict(resolved: ResolvedModel) -> list[int]:
    import mlflow.pyfunc

    return [int(x) for x in mlflow.pyfunc.load_model(str(resolved.path)).predict(iris_frame())]


def _assert_is_logged_model(resolved: ResolvedModel, logged: Any) -> None:
    """The downloaded MLmodel is the one log_model wrote: same id, run, flavours and signature."""
    info = resolved.info
    assert info.path == resolved.path
    assert info.model_uuid == logged.model_uuid
    assert info.run_id == logged.run_id
    assert set(info.flavors) == set(logged.flavors)
    assert info.signature is not None
    assert json.loads(info.signature["inputs"]) == json.loads(logged.signature.to_dict()["inputs"])
    assert info.python_version == logged.flavors["python_function"]["python_version"]


def test_runs_uri(registry: Registry) -> None:
    uri = f"runs:/{registry.run_id}/model"
    with resolve_model(uri, tracking_uri=registry.server.url) as resolved:
        _assert_is_logged_model(resolved, registry.logged)
        assert _predict(resolved) == registry.predictions
        assert resolved.uri == uri
        assert resolved.run_id == registry.run_id
        assert (resolved.model_name, resolved.model_version) == (None, None)
        assert resolved.source == registry.artifact_location
        assert resolved.tracking_uri == registry.server.url


@pytest.mark.parametrize(
    ("suffix", "version"), [("/1", "1"), ("@champion", "1"), ("/2", "2"), ("/latest", "2")]
)
def test_models_uri(registry: Registry, suffix: str, version: str) -> None:
    uri = f"models:/{registry.name}{suffix}"
    with resolve_model(uri, tracking_uri=registry.server.url) as resolved:
        logged = registry.logged if version == "1" else registry.logged_constant
        _assert_is_logged_model(resolved, logged)
        expected = registry.predictions if version == "1" else registry.constant_predictions
        assert _predict(resolved) == expected
        assert (resolved.model_name, resolved.model_version) == (registry.name, version)
        assert resolved.run_id == logged.run_id
        assert resolved.source.startswith("mlflow-artifacts:/")
        assert resolved.labels() == {
            contract.LABEL_MODEL_URI: uri,
            contract.LABEL_MODEL_RUN_ID: logged.run_id,
            contract.LABEL_MODEL_NAME: registry.name,
            contract.LABEL_MODEL_VERSION: version,
            contract.LABEL_MODEL_SOURCE: resolved.source,
        }
    assert registry.predictions != registry.constant_predictions  # so the check above means something


def test_mlflow_artifacts_uri(registry: Registry) -> None:
    assert registry.artifact_location.startswith("mlflow-artifacts:/")
    with resolve_model(registry.artifact_location, tracking_uri=registry.server.url) as resolved:
        _assert_is_logged_model(resolved, registry.logged)
        assert _predict(resolved) == registry.predictions
        assert resolved.source == registry.artifact_location
        assert resolved.run_id == registry.run_id  # read from the MLmodel file


def test_tracking_uri_from_the_environment(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.server.url)
    with resolve_model(f"models:/{registry.name}@{registry.alias}") as resolved:
        assert resolved.model_version == "1"
        assert resolved.tracking_uri == registry.server.url
    assert os.environ["MLFLOW_TRACKING_URI"] == registry.server.url  # left as it was


def test_moving_the_alias_moves_what_it_resolves_to(registry: Registry) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry.server.url)
    uri = f"models:/{registry.name}@moving"
    client.set_registered_model_alias(registry.name, "moving", "1")
    with resolve_model(uri, tracking_uri=registry.server.url) as resolved:
        assert resolved.model_version == "1"
        assert _predict(resolved) == registry.predictions
    client.set_registered_model_alias(registry.name, "moving", "2")
    with resolve_model(uri, tracking_uri=registry.server.url) as resolved:
        assert resolved.model_version == "2"
        assert _predict(resolved) == registry.constant_predictions
        assert resolved.uri == uri


@pytest.mark.parametrize("form", ["path", "relative", "file"])
def test_local_models_are_used_in_place(
    form: str, model_dir: Any, monkeypatch: pytest.MonkeyPatch, registry: Registry
) -> None:
    saved: Path = model_dir("sklearn_iris")
    monkeypatch.chdir(saved.parent)
    uri = {"path": str(saved), "relative": saved.name, "file": saved.as_uri()}[form]
    with resolve_model(uri) as resolved:
        assert resolved.path == saved
        assert resolved.info == read_model_info(saved)
        assert resolved.source == str(saved)
        assert _predict(resolved) == registry.predictions
        assert resolved.labels() == {contract.LABEL_MODEL_URI: uri, contract.LABEL_MODEL_SOURCE: str(saved)}
    assert (saved / "MLmodel").is_file()  # never removed: it is the user's


def test_the_download_is_removed_afterwards(registry: Registry, private_tmp: Path) -> None:
    with resolve_model(f"models:/{registry.name}/1", tracking_uri=registry.server.url) as resolved:
        assert (resolved.path / "MLmodel").is_file()
        assert resolved.path.is_relative_to(private_tmp)
    assert list(private_tmp.iterdir()) == []


def test_the_download_is_removed_when_the_block_raises(registry: Registry, private_tmp: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        resolve_model(f"runs:/{registry.run_id}/model", tracking_uri=registry.server.url) as resolved,
    ):
        assert resolved.path.is_relative_to(private_tmp) and resolved.path.is_dir()
        raise RuntimeError("boom")
    assert list(private_tmp.iterdir()) == []
