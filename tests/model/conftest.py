"""Fixtures for kiln.model: real MLflow tracking servers with logged and registered models.

One plain server per session (``registry``) holds two versions of a registered iris model,
an alias, a plain-text artifact and, on demand, a large model; one basic-auth server
(``guarded``) holds a model that user ``bob`` may not read. Both start together.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.running import remove_dir, short_tmp_dir
from tests.tracking import TrackingServer, logging_to, started_server

MODEL_NAME = "kiln-iris"
ALIAS = "champion"
BIG_MODEL_BYTES = 192 * 1024 * 1024


@dataclass(frozen=True)
class Registry:
    """What the session logged to the plain server, to compare resolutions against."""

    server: TrackingServer
    experiment_id: str
    run_id: str
    """The run with the iris model at ``model`` and a text file at ``notes/readme.txt``."""
    logged: Any
    """mlflow.models.model.ModelInfo of version 1 (iris), as log_model returned it."""
    logged_constant: Any
    """... and of version 2 (always answers 2)."""
    artifact_location: str
    """Version 1's storage location, an ``mlflow-artifacts:/`` URI."""
    predictions: list[int]
    constant_predictions: list[int]
    name: str = MODEL_NAME
    alias: str = ALIAS


@dataclass(frozen=True)
class Guarded:
    """A basic-auth server with registered model ``guarded`` that ``bob`` is denied."""

    server: TrackingServer
    run_id: str
    name: str
    denied: tuple[str, str]


def iris_frame() -> Any:
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True).data


def _log_saved_model(saved: Path) -> Any:
    """``mlflow.sklearn.log_model`` of a model the fixtures saved (no requirement inference: fast)."""
    import mlflow.sklearn
    from mlflow.models import Model

    saved_meta = Model.load(str(saved))
    return mlflow.sklearn.log_model(
        mlflow.sklearn.load_model(str(saved)),
        name="model",
        signature=saved_meta.signature,
        input_example=iris_frame().iloc[[0, 50, 100]],
        pip_requirements=str(saved / "requirements.txt"),
    )


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Downloads go here (Python's temp dir for the test), so a test can see none was left behind.

    Short, under /tmp: ``kiln serve`` puts its runtime dir (and unix sockets, at most 107
    characters a path) in it, and an xdist worker's tmp_path is already about 80.
    """
    root = short_tmp_dir("kiln-t-")
    monkeypatch.setattr("tempfile.tempdir", str(root))
    yield root
    remove_dir(root)


@pytest.fixture(scope="session")
def _servers(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Callable[[str], Path]
) -> Iterator[tuple[TrackingServer, TrackingServer]]:
    """Both servers start at once, while the models they will hold are saved (each takes many s)."""
    with (
        started_server(tmp_path_factory.mktemp("mlflow-server")) as plain,
        started_server(tmp_path_factory.mktemp("mlflow-auth-server"), auth=True) as auth,
    ):
        model_dir("sklearn_iris")
        model_dir("sklearn_iris_constant")
        try:
            yield plain.wait(), auth.wait()
        finally:
            plain.terminate()
            auth.terminate()


@pytest.fixture(scope="session")
def mlflow_server(_servers: tuple[TrackingServer, TrackingServer]) -> TrackingServer:
    """A plain ``mlflow server`` (SQLite store, proxied artifacts) for the session."""
    return _servers[0]


@pytest.fixture(scope="session")
def registry(mlflow_server: TrackingServer, model_dir: Callable[[str], Path]) -> Registry:
    """Log iris (v1, alias ``champion``) and iris-constant (v2) and register both as ``kiln-iris``."""
    import mlflow
    from mlflow import MlflowClient

    iris_dir, constant_dir = model_dir("sklearn_iris"), model_dir("sklearn_iris_constant")
    with logging_to(mlflow_server):
        experiment = mlflow.set_experiment("kiln-model-tests")
        with mlflow.start_run() as run:
            logged = _log_saved_model(iris_dir)
            mlflow.log_text("not a model\n", "notes/readme.txt")
        with mlflow.start_run() as run_constant:
            logged_constant = _log_saved_model(constant_dir)
        mlflow.register_model(f"runs:/{run.info.run_id}/model", MODEL_NAME)
        mlflow.register_model(f"runs:/{run_constant.info.run_id}/model", MODEL_NAME)
        client = MlflowClient()
        client.set_registered_model_alias(MODEL_NAME, ALIAS, "1")
        location = client.get_logged_model(logged.model_id).artifact_location
    data = iris_frame()
    return Registry(
        server=mlflow_server,
        experiment_id=experiment.experiment_id,
        run_id=run.info.run_id,
        logged=logged,
        logged_constant=logged_constant,
        artifact_location=location,
        predictions=mlflow.sklearn.load_model(str(iris_dir)).predict(data).tolist(),
        constant_predictions=mlflow.sklearn.load_model(str(constant_dir)).predict(data).tolist(),
    )


@pytest.fixture(scope="session")
def big_model_uri(registry: Registry, model_dir: Callable[[str], Path], tmp_path_factory: Any) -> str:
    """``runs:/<run>/big_model``: the iris model plus a 192 MiB file, for progress and Ctrl-C."""
    import mlflow

    big = tmp_path_factory.mktemp("big") / "big_model"
    shutil.copytree(model_dir("sklearn_iris"), big)
    with (big / "weights.bin").open("wb") as out:
        block = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(BIG_MODEL_BYTES // len(block)):
            out.write(block)
    with logging_to(registry.server), mlflow.start_run(experiment_id=registry.experiment_id) as run:
        mlflow.log_artifacts(str(big), "big_model")
    shutil.rmtree(big)
    return f"runs:/{run.info.run_id}/big_model"


@pytest.fixture(scope="session")
def guarded(_servers: tuple[TrackingServer, TrackingServer], model_dir: Callable[[str], Path]) -> Guarded:
    """MLflow's basic-auth app: admin logs and registers ``guarded``; ``bob`` is denied both."""
    import mlflow
    from mlflow.server import get_app_client

    server, denied = _servers[1], ("bob", "bob-test-password")
    assert server.admin is not None
    with logging_to(server, login=server.admin):
        experiment = mlflow.set_experiment("guarded")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(model_dir("sklearn_iris")), "model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", "guarded")
        admin = get_app_client("basic-auth", tracking_uri=server.url)
        admin.create_user(*denied)
        admin.grant_user_permission(denied[0], "experiment", experiment.experiment_id, "DENY")
        admin.grant_user_permission(denied[0], "registered_model", "guarded", "DENY")
    return Guarded(server=server, run_id=run.info.run_id, name="guarded", denied=denied)
