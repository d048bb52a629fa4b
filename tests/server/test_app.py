"""The app's small endpoints, its routing errors, and what happens when the model cannot load."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import mlflow
import pytest

import kiln
from kiln.server.app import create_app
from kiln.settings import RuntimeSettings
from tests.server.serving import ThreadServer


def test_ping_health_version(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("sklearn_iris")
    for path in ("/ping", "/health"):
        answer = httpx.get(url + path)
        assert answer.status_code == 200
        assert answer.text == "\n"
    version = httpx.get(url + "/version")
    assert version.status_code == 200
    assert version.text == mlflow.__version__
    assert version.headers["x-kiln-version"] == kiln.__version__


def test_unknown_path_is_json_404(kiln_url: Callable[..., str]) -> None:
    answer = httpx.get(kiln_url("sklearn_iris") + "/predict")
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert "/predict" in answer.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/invocations"), ("POST", "/ping"), ("PUT", "/version")]
)
def test_wrong_method_is_json_405(kiln_url: Callable[..., str], method: str, path: str) -> None:
    answer = httpx.request(method, kiln_url("sklearn_iris") + path)
    assert answer.status_code == 405
    body = answer.json()
    assert body["error_code"] == "BAD_REQUEST"
    assert method in body["message"]
    assert "allow" in answer.headers


def _start_failure(model_path: Path, caplog: pytest.LogCaptureFixture) -> str:
    ready: list[bool] = []
    app = create_app(RuntimeSettings(model_dir=str(model_path)), on_ready=lambda: ready.append(True))
    server = ThreadServer(app)
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="exited before it started"):
        server.start()
    server.stop()
    assert not ready, "on_ready must not be called when the model fails to load"
    assert not server.server.started
    assert server.exit_code == 3, "uvicorn exits with STARTUP_FAILURE (3) when the lifespan fails"
    return caplog.text


def test_model_that_fails_to_load_stops_startup(
    model_dir: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    log = _start_failure(model_dir("load_raises"), caplog)
    assert "deliberate failure while loading the model" in log
    assert "the scoring server cannot start" in log
    assert "Traceback" in log, "the model's own traceback helps its author"


def test_not_pyfunc_model_stops_startup(
    model_dir: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    log = _start_failure(model_dir("not_pyfunc"), caplog)
    assert "has no 'python_function' flavour" in log
    assert "keras" in log
    assert "Traceback" not in log, "a user's mistake is reported without a traceback"


def test_missing_model_dir_stops_startup(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = _start_failure(tmp_path / "nothing-here", caplog)
    assert "does not exist" in log
    assert "nothing-here" in log
    assert "Traceback" not in log


def test_on_ready_is_called_once_loaded(model_dir: Callable[[str], Path]) -> None:
    calls: list[int] = []
    app = create_app(
        RuntimeSettings(model_dir=str(model_dir("sklearn_iris"))), on_ready=lambda: calls.append(1)
    )
    server = ThreadServer(app).start()
    try:
        assert calls == [1]
        assert httpx.get(server.url + "/ping").status_code == 200
    finally:
        server.stop()
