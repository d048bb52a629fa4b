"""``kiln serve``: the runtime on this machine, with flags mapped onto RuntimeSettings."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.runtime.running import Running, free_port, running
from tests.runtime.scoring import iris_expected, iris_request

StartServe = Callable[..., Running]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_") and k != "DISABLE_NGINX"}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", **extra)
    return env


def _kiln(*args: str) -> list[str]:
    return [sys.executable, "-m", "kiln", *args]


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[StartServe]:
    """``start_serve(model, "--workers", "1")``: ``kiln serve -m model --port <free>`` running."""
    with ExitStack() as stack:

        def start(model: Path, *args: str) -> Running:
            port = free_port()
            command = _kiln("serve", "-m", str(model), "--port", str(port), *args)
            return stack.enter_context(running(command, _env(), port, tmp_path, tmp_path / "logs"))

        yield start


def test_kiln_serve_serves_with_flags(start_serve: StartServe, model_dir: Callable[[str], Path]) -> None:
    model = model_dir("sklearn_iris")
    run = start_serve(model, "--workers", "1", "--request-timeout", "7", "--max-body-size", "1m")
    run.wait_ready()
    response = run.post("/invocations", iris_request(model))
    assert response.status_code == 200
    assert response.json() == {"predictions": iris_expected(model)}
    assert response.headers["server"] == "nginx"
    assert len(run.workers()) == 1
    # The flags reached nginx.conf in the fresh runtime dir, which is removed at exit.
    runtime_dir = Path(re.search(r"\(runtime dir (\S+)\)", run.output()).group(1))  # type: ignore[union-attr]
    conf = (runtime_dir / "nginx.conf").read_text()
    assert "proxy_read_timeout 17s;" in conf
    assert "client_max_body_size 1048576;" in conf
    run.process.send_signal(signal.SIGINT)  # Ctrl+C
    assert run.wait_exit(30) == 0
    assert not runtime_dir.exists()


def test_kiln_serve_no_nginx(start_serve: StartServe, model_dir: Callable[[str], Path]) -> None:
    run = start_serve(model_dir("sklearn_iris"), "--no-nginx", "--workers", "1")
    run.wait_ready()
    assert run.nginx_master() is None
    assert "server" not in run.get("/ping").headers


def test_kiln_serve_without_nginx_installed_says_what_to_do(model_dir: Callable[[str], Path]) -> None:
    # KILN_NGINX_BINARY stands in for "not on PATH" without hiding the real nginx from other tests.
    command = _kiln("serve", "-m", str(model_dir("sklearn_iris")), "--port", str(free_port()))
    env = _env(KILN_NGINX_BINARY="/nonexistent/sbin/nginx")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Error: nginx binary '/nonexistent/sbin/nginx'" in result.stderr
    assert "apt-get install nginx" in result.stderr
    assert "--no-nginx" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--max-body-size", "lots"], 2, "--max-body-size='lots' is not a size"),
        (["--workers", "0"], 2, "Invalid value for '--workers'"),
        (["--model-config", "[1]"], 2, "--model-config must be a JSON object"),
        (["--disable-nginx", "--log-level", "loud"], 2, "Invalid value for '--log-level'"),
    ],
)
def test_kiln_serve_bad_flags(
    model_dir: Callable[[str], Path], args: list[str], code: int, message: str
) -> None:
    command = _kiln("serve", "-m", str(model_dir("sklearn_iris")), *args)
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_kiln_serve_remote_uri_without_a_tracking_server(tmp_path: Path) -> None:
    env = {k: v for k, v in _env().items() if not k.startswith("MLFLOW_TRACKING")}
    result = subprocess.run(
        _kiln("serve", "-m", "runs:/0123abcd/model"), env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "model URI 'runs:/0123abcd/model' needs an MLflow tracking server" in result.stderr
    assert "--tracking-uri" in result.stderr
    assert "Traceback" not in result.stderr


def test_kiln_serve_missing_model_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = subprocess.run(
        _kiln("serve", "-m", str(missing), "--disable-nginx"), env=_env(), capture_output=True, text=True
    )
    assert result.returncode == 1
    assert f"Error: model path '{missing}' does not exist" in result.stderr
