"""``python -m kiln.runtime``: its arguments and its start-up errors, as a container would show them."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.runtime.running import free_port, remove_dir, runtime_command, runtime_env, short_tmp_dir


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(runtime_command(*args), env=env, capture_output=True, text=True, timeout=60)


def test_unknown_argument_is_rejected(tmp_path: Path) -> None:
    result = _run(["bogus"], runtime_env(tmp_path, free_port(), tmp_path))
    assert result.returncode == 2
    assert "unexpected argument 'bogus'" in result.stderr
    assert "'serve'" in result.stderr
    assert "Traceback" not in result.stderr


def test_argument_after_serve_is_rejected(tmp_path: Path) -> None:
    result = _run(["serve", "--port", "9000"], runtime_env(tmp_path, free_port(), tmp_path))
    assert result.returncode == 2
    assert "unexpected argument '--port'" in result.stderr


def test_bad_environment_value(tmp_path: Path) -> None:
    env = runtime_env(tmp_path, free_port(), tmp_path, {"MLFLOW_MODELS_WORKERS": "many"})
    result = _run([], env)
    assert result.returncode == 2
    assert "Error: MLFLOW_MODELS_WORKERS='many' is not a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_nothing_mounted_at_the_model_dir(tmp_path: Path) -> None:
    result = _run(["serve"], runtime_env(tmp_path / "model", free_port(), tmp_path / "rt"))
    assert result.returncode == 1
    assert "Error:" in result.stderr
    assert str(tmp_path / "model") in result.stderr
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("disable_nginx", ["false", "true"])
def test_port_in_use(model_dir: Callable[[str], Path], disable_nginx: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runtime_dir = short_tmp_dir("kiln-rt-")
        env = runtime_env(model_dir("sklearn_iris"), port, runtime_dir, {"DISABLE_NGINX": disable_nginx})
        try:
            result = _run([], env)
        finally:
            remove_dir(runtime_dir)
    assert result.returncode == 1
    assert f"Error: cannot listen on 0.0.0.0:{port}: Address already in use" in result.stderr
    assert "pick another --port / KILN_PORT" in result.stderr
