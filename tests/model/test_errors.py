"""Every way a model URI fails, produced for real: the message names the URI and the server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kiln.errors import ModelError, ModelURIError
from kiln.model.resolve import resolve_model
from tests.model.conftest import Guarded, Registry
from tests.tracking import free_port, logging_to

FAST = 10.0
"""Seconds within which an unreachable server must be reported (MLflow alone: about 4 minutes)."""


def failure(uri: str, error: type[ModelError] = ModelURIError, **options: Any) -> str:
    """Resolve ``uri``, expecting ``error``; return its text as the CLI would show it."""
    with pytest.raises(error) as caught, resolve_model(uri, **options):
        pytest.fail(f"{uri} resolved")
    text = caught.value.format()
    assert "Traceback" not in text
    assert repr(uri) in text, text
    return text


@pytest.mark.parametrize(
    "uri",
    ["runs:/0123456789abcdef0123456789abcdef/model", "models:/kiln-iris/1", "models:/kiln-iris@champion"],
)
def test_unreachable_server_fails_fast(uri: str, registry: Registry) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    text = failure(uri, tracking_uri=dead)
    assert time.monotonic() - started < FAST
    assert "cannot reach " in text and dead in text and "connection refused" in text


def test_unreachable_artifact_server_fails_fast(registry: Registry) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    text = failure(registry.artifact_location, tracking_uri=dead)
    assert time.monotonic() - started < FAST
    assert f"cannot reach tracking server {dead}" in text


def test_unknown_run(registry: Registry) -> None:
    run_id = uuid.uuid4().hex
    text = failure(f"runs:/{run_id}/model", tracking_uri=registry.server.url)
    assert text == (
        f"model URI 'runs:/{run_id}/model' not found on tracking server {registry.server.url}: "
        f"run '{run_id}' does not exist"
    )


def test_artifact_path_not_in_the_run(registry: Registry, private_tmp: Path) -> None:
    uri = f"runs:/{registry.run_id}/modle"
    text = failure(uri, tracking_uri=registry.server.url)
    assert text == (
        f"model URI '{uri}' not found on tracking server {registry.server.url}: run '{registry.run_id}' "
        "has no artifact 'modle' (its artifacts: model, notes)"
    )
    assert list(private_tmp.iterdir()) == []


def test_unknown_registered_model(registry: Registry) -> None:
    for uri in ("models:/no-such-model/1", "models:/no-such-model@champion"):
        text = failure(uri, tracking_uri=registry.server.url)
        assert text == (
            f"model URI '{uri}' not found in the model registry of tracking server {registry.server.url}: "
            "there is no registered model 'no-such-model'"
        )


def test_unknown_version(registry: Registry) -> None:
    text = failure("models:/kiln-iris/99", tracking_uri=registry.server.url)
    assert text.endswith("registered model 'kiln-iris' has no version 99 (its versions: 1, 2)")
    assert registry.server.url in text


def test_unknown_alias(registry: Registry) -> None:
    text = failure("models:/kiln-iris@nope", tracking_uri=registry.server.url)
    assert "registered model 'kiln-iris' has no alias 'nope' (its aliases: " in text
    assert "champion -> version 1" in text
    assert registry.server.url in text


def test_artifact_that_is_not_a_model(registry: Registry, private_tmp: Path) -> None:
    for path in ("notes", "notes/readme.txt"):
        uri = f"runs:/{registry.run_id}/{path}"
        text = failure(uri, tracking_uri=registry.server.url)
        assert text.startswith(
            f"model URI '{uri}' (from tracking server {registry.server.url}) is not an MLflow model: "
            "it has no MLmodel file (it holds: readme.txt)"
        )
    assert list(private_tmp.iterdir()) == []  # the download was removed


def test_model_without_pyfunc_flavour(registry: Registry, model_dir: Any) -> None:
    import mlflow

    with logging_to(registry.server), mlflow.start_run(experiment_id=registry.experiment_id) as run:
        mlflow.log_artifacts(str(model_dir("not_pyfunc")), "keras_model")
    uri = f"runs:/{run.info.run_id}/keras_model"
    text = failure(uri, tracking_uri=registry.server.url)
    assert text == (
        f"model '{uri}' has no 'python_function' flavour (its flavours: keras); only python_function "
        f"models can be served (downloaded from tracking server {registry.server.url})"
    )


def test_missing_mlflow_artifact(registry: Registry) -> None:
    uri = registry.artifact_location.replace("/artifacts", "/no-such-dir")
    text = failure(uri, tracking_uri=registry.server.url)
    assert text == f"model URI '{uri}' not found on tracking server {registry.server.url}: " + (
        "nothing is stored at that path (404)"
    )


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_registry_uri_when_it_differs(registry: Registry, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    options: dict[str, str] = {"tracking_uri": registry.server.url}
    if how == "argument":
        options["registry_uri"] = dead
    else:
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", dead)
    text = failure("models:/kiln-iris/1", **options)
    assert text.startswith(
        f"cannot reach model registry at {dead} to resolve model URI 'models:/kiln-iris/1'"
    )


class _NotMlflow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404, "nothing here")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_mlflow() -> Iterator[str]:
    """An HTTP server that is not MLflow (404 for everything)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotMlflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_server_that_is_not_mlflow(not_mlflow: str) -> None:
    text = failure("runs:/0123456789abcdef0123456789abcdef/model", tracking_uri=not_mlflow)
    assert text.startswith(f"tracking server {not_mlflow} does not answer like an MLflow tracking server")


def test_no_tracking_server_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    text = failure("models:/kiln-iris/1")
    assert "needs an MLflow tracking server, but none is configured" in text
    assert "MLFLOW_TRACKING_URI" in text
    assert list(tmp_path.iterdir()) == []  # MLflow's default store was not created here


def test_local_path_that_does_not_exist(tmp_path: Path) -> None:
    uri = str(tmp_path / "no-such-model")
    assert failure(uri).startswith(f"model path '{uri}' does not exist")


def test_unsupported_scheme() -> None:
    assert failure("gopher://host/model").startswith(
        "model URI 'gopher://host/model' has a scheme MLflow cannot download from"
    )


@pytest.mark.parametrize("uri", ["runs:/{run_id}/model", "models:/guarded/1"])
def test_authentication_required(guarded: Guarded, uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    text = failure(uri.format(run_id=guarded.run_id), tracking_uri=guarded.server.url)
    assert f"{guarded.server.url} requires credentials for model URI" in text
    assert "(401 Unauthorized)" in text and "MLFLOW_TRACKING_USERNAME" in text


@pytest.mark.parametrize("uri", ["runs:/{run_id}/model", "models:/guarded/1"])
def test_wrong_password(guarded: Guarded, uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    text = failure(uri.format(run_id=guarded.run_id), tracking_uri=guarded.server.url)
    assert (
        f"{guarded.server.url} refused the credentials from MLFLOW_TRACKING_USERNAME, "
        "MLFLOW_TRACKING_PASSWORD for model URI" in text
    )
    assert "not-the-password" not in text


@pytest.mark.parametrize("uri", ["runs:/{run_id}/model", "models:/guarded/1"])
def test_permission_denied(guarded: Guarded, uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", guarded.denied[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", guarded.denied[1])
    text = failure(uri.format(run_id=guarded.run_id), tracking_uri=guarded.server.url)
    assert f"{guarded.server.url} denied access to model URI" in text and "(403 Forbidden" in text
