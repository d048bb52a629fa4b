"""Serve ASGI apps over real HTTP for the server tests: uvicorn in a thread or in a subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[2]


def _bind() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ThreadServer:
    """A uvicorn.Server running ``app`` on a free loopback port in a background thread."""

    def __init__(self, app: Any) -> None:
        self.sock = _bind()
        config = uvicorn.Config(app=app, loop="uvloop", http="httptools", log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except SystemExit as exc:  # uvicorn exits with 3 when the app's startup fails
            self.exit_code = exc.code if isinstance(exc.code, int) else 1
        else:
            self.exit_code = 0

    def start(self, timeout: float = 120) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread exited before it started (see the log)")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@contextlib.contextmanager
def thread_server(app: Any) -> Iterator[str]:
    server = ThreadServer(app).start()
    try:
        yield server.url
    finally:
        server.stop()


class ProcessServer:
    """``python -m tests.server.serve_app`` in a subprocess: settings come from its environment."""

    def __init__(self, model_dir: Path, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **env, "KILN_MODEL_DIR": str(model_dir), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.server.serve_app"],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.url = ""

    def start(self, timeout: float = 120) -> ProcessServer:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()  # "PORT <n>" once ready, EOF on failure
        if not line.startswith("PORT "):
            self.proc.wait(timeout)
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.read_log()}")
        self.url = f"http://127.0.0.1:{line.split()[1]}"
        return self

    def read_log(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


def wait_until(predicate: Any, timeout: float = 30, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def client(url: str, timeout: float = 60) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=timeout)
