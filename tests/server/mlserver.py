"""A real MLServer (``mlserver start``) with its MLflow runtime, in its own venv, for comparisons.

MLServer 1.7 and mlserver-mlflow pin versions that conflict with the test venv's, so they
live in ``.cache/mlserver/venv``, made on first use with pip (which reads the host's pip
configuration). pandas stays below 3 there: MLServer 1.7.1's pandas codec cannot encode
pandas 3's string columns (``KeyError: 'O'`` in ``to_datatype``), which would hide the
behaviour it has for every earlier pandas.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from tests.runtime.running import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".cache" / "mlserver" / "venv"
MLSERVER_VERSION = "1.7.1"


def _requirements() -> list[str]:
    import mlflow
    import sklearn

    return [
        f"mlserver=={MLSERVER_VERSION}",
        f"mlserver-mlflow=={MLSERVER_VERSION}",
        f"mlflow=={mlflow.__version__}",  # loads the fixtures the test venv's MLflow saved
        f"scikit-learn=={sklearn.__version__}",
        "pandas<3",
    ]


def ensure_venv() -> Path:
    """``.cache/mlserver/venv``, made (under a lock) if it has no ``mlserver`` yet."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (VENV / "bin" / "mlserver").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            subprocess.run([*pip, *_requirements()], check=True, timeout=1800)
    return VENV


@contextlib.contextmanager
def mlserver(models: Mapping[str, Path], workdir: Path, timeout: float = 180) -> Iterator[str]:
    """``mlserver start`` serving each model dir under its name; yields the HTTP base URL."""
    venv = ensure_venv()
    repository = workdir / "mlserver-models"
    for name, path in models.items():
        folder = repository / name
        folder.mkdir(parents=True, exist_ok=True)
        settings = {
            "name": name,
            "implementation": "mlserver_mlflow.MLflowRuntime",
            "parameters": {"uri": str(path)},
        }
        (folder / "model-settings.json").write_text(json.dumps(settings))
    port = free_port()
    server = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "parallel_workers": 0}
    (repository / "settings.json").write_text(json.dumps(server))
    log = open(workdir / "mlserver.log", "wb")  # noqa: SIM115 - closed below
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"file://{workdir}/mlruns",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    process = subprocess.Popen(
        [str(venv / "bin" / "mlserver"), "start", str(repository)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, list(models), timeout, workdir / "mlserver.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(
    url: str, process: subprocess.Popen[bytes], names: list[str], timeout: float, log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"mlserver exited with {process.returncode}:\n{log.read_text(errors='replace')}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if all(
                httpx.get(f"{url}/v2/models/{name}/ready", timeout=2).status_code == 200 for name in names
            ):
                return
        time.sleep(0.5)
    raise TimeoutError(f"mlserver not ready within {timeout} s:\n{log.read_text(errors='replace')}")
