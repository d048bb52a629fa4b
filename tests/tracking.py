"""A real MLflow tracking server for tests: ``mlflow server`` on a free port, stopped afterwards.

``with tracking_server(tmp_path) as server:`` starts the venv's ``mlflow server`` with a
SQLite backend store and proxied artifacts (``--serve-artifacts``), waits for ``/health``
and stops the whole process group on exit; ``started_server`` does not wait, so several
servers (and slow fixture work) can start at once. ``auth=True`` starts MLflow's ``basic-auth``
app with an admin user (``server.admin``). ``logging_to(server)`` points this process's
MLflow client at it for a block (to log runs and register models) and restores the
previous settings afterwards. Any test folder can import these; see tests/model/conftest.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

MLFLOW = str(Path(sys.executable).parent / "mlflow")
ADMIN = ("admin", "kiln-test-admin-password")
_CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@dataclass(frozen=True)
class TrackingServer:
    """A running ``mlflow server``: its URL, its files, and its admin login when auth is on."""

    url: str
    root: Path
    log: Path
    admin: tuple[str, str] | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def free_port() -> int:
    """A TCP port nothing listens on right now (other tests run in parallel: never hard-code one)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class StartingServer:
    """An ``mlflow server`` process that may not answer yet: ``wait()`` until it does."""

    server: TrackingServer
    process: subprocess.Popen[bytes]

    def terminate(self) -> None:
        """Ask the server to stop without waiting (stop several at once; exit waits for them)."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)

    def wait(self, timeout: float = 180.0) -> TrackingServer:
        """Block until ``/health`` answers 200; raise with the server's log if it dies or hangs."""
        _wait_healthy(self.server, self.process, timeout)
        return self.server


@contextmanager
def tracking_server(root: Path, *, auth: bool = False, timeout: float = 180.0) -> Iterator[TrackingServer]:
    """Start ``mlflow server`` with its store and artifacts under ``root``; stop it on exit."""
    with started_server(root, auth=auth) as starting:
        yield starting.wait(timeout)


@contextmanager
def started_server(root: Path, *, auth: bool = False) -> Iterator[StartingServer]:
    """Launch ``mlflow server`` without waiting for it (start several, or work, meanwhile)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    # No job runner: it starts eight more Python processes (huey consumers) that tests never use.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    command = [
        MLFLOW,
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if auth:
        command += ["--app-name", "basic-auth"]
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(_auth_config(root))
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "kiln-test-csrf-key"
    server = TrackingServer(
        url=f"http://127.0.0.1:{port}", root=root, log=root / "server.log", admin=ADMIN if auth else None
    )
    with server.log.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield StartingServer(server=server, process=process)
    finally:
        _stop(process)


def _auth_config(root: Path) -> Path:
    path = root / "basic_auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN[0]}\n"
        f"admin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # Checking a password (scrypt) on every request makes a loaded machine crawl.
        "auth_cache_ttl_seconds = 600\n"
    )
    return path


def _wait_healthy(server: TrackingServer, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{_tail(server.log)}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"mlflow server not healthy after {timeout:.0f} s:\n{_tail(server.log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group (it was started in a new session), then SIGKILL
    whatever of the group is left (uvicorn workers outlive a killed ``mlflow`` CLI)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)  # a test server's store needs no graceful shutdown
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def logging_to(server: TrackingServer, *, login: tuple[str, str] | None = None) -> Iterator[None]:
    """Point this process's MLflow client at ``server`` (as ``login``) for the block, then restore."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_state

    names = ("MLFLOW_TRACKING_URI", *_CREDENTIAL_ENV)
    saved_env = {name: os.environ.get(name) for name in names}
    saved_uri = getattr(tracking_state, "_tracking_uri", None)
    for name in _CREDENTIAL_ENV:
        os.environ.pop(name, None)
    if login:
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = login
    mlflow.set_tracking_uri(server.url)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
