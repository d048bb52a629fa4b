"""The runtime serving a real model through real nginx and uvicorn workers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.runtime.conftest import StartRuntime
from tests.runtime.running import Running, free_port
from tests.runtime.scoring import iris_expected, iris_request


def test_ping_and_invocations_through_nginx(iris_runtime: Running, model_dir: Callable[[str], Path]) -> None:
    model = model_dir("sklearn_iris")
    ping = iris_runtime.get("/ping")
    assert ping.status_code == 200
    assert ping.headers["server"] == "nginx"  # no version: server_tokens off
    response = iris_runtime.post("/invocations", iris_request(model))
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": iris_expected(model)}


def test_every_path_is_proxied(iris_runtime: Running) -> None:
    assert iris_runtime.get("/health").status_code == 200
    version = iris_runtime.get("/version")
    assert version.status_code == 200
    assert version.text.strip()
    # An unknown path is answered by the app (JSON), not by nginx (HTML).
    unknown = iris_runtime.get("/no/such/path")
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_workers_from_mlflow_models_workers(iris_runtime: Running) -> None:
    assert len(iris_runtime.workers()) == 2
    assert iris_runtime.nginx_master() is not None


def test_body_over_the_limit_gets_json_413_from_nginx(iris_runtime: Running) -> None:
    response = iris_runtime.post("/invocations", b"[" + b"1," * 40_000 + b"1]")
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "65536 bytes" in body["message"]


def test_access_log_on_stdout_without_health_probes(
    iris_runtime: Running, model_dir: Callable[[str], Path]
) -> None:
    iris_runtime.get("/ping")
    iris_runtime.post("/invocations", iris_request(model_dir("sklearn_iris")), content_type="text/plain")
    # nginx buffers its access log and flushes it at least once a second.
    deadline = time.monotonic() + 10
    while '"POST /invocations HTTP/1.1" 415' not in iris_runtime.output() and time.monotonic() < deadline:
        time.sleep(0.2)
    output = iris_runtime.output()
    assert '"POST /invocations HTTP/1.1" 415' in output
    assert '"GET /ping HTTP/1.1" 200' not in output


def test_everything_written_is_in_the_runtime_dir(iris_runtime: Running) -> None:
    names = {p.name for p in iris_runtime.runtime_dir.iterdir()}
    assert {"nginx.conf", "uvicorn-0.sock", "uvicorn-1.sock", "nginx.pid", "nginx", "kiln.lock"} <= names
    assert sorted(p.name for p in (iris_runtime.runtime_dir / "nginx").iterdir()) == [
        "client_body", "fastcgi", "proxy", "scgi", "uwsgi",
    ]  # fmt: skip


def test_healthcheck_module(iris_runtime: Running, tmp_path: Path) -> None:
    def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "kiln.runtime.healthcheck"]
        env = {"PATH": "/usr/bin:/bin", "KILN_PORT": str(port)}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)

    healthy = healthcheck(iris_runtime.port)
    assert healthy.returncode == 0, healthy.stderr
    unhealthy = healthcheck(free_port())
    assert unhealthy.returncode == 1
    assert "/ping failed" in unhealthy.stderr


def test_kiln_workers_wins_over_mlflow_models_workers(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    run = start_runtime(model_dir("sklearn_iris"), env={"KILN_WORKERS": "1", "MLFLOW_MODELS_WORKERS": "3"})
    run.wait_ready()
    assert len(run.workers()) == 1


def test_disable_nginx_serves_on_all_interfaces(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    model = model_dir("sklearn_iris")
    run = start_runtime(model, env={"DISABLE_NGINX": "true", "KILN_WORKERS": "1"})
    run.wait_ready()
    assert run.nginx_master() is None
    assert len(run.workers()) == 1
    assert ("0.0.0.0", run.port) in _tcp_listeners()
    response = run.post("/invocations", iris_request(model))
    assert response.status_code == 200
    assert response.json() == {"predictions": iris_expected(model)}
    assert "server" not in response.headers  # uvicorn's own, without nginx in front


def _tcp_listeners() -> set[tuple[str, int]]:
    """Addresses in LISTEN state from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, state = fields[1], fields[3]
        if state == "0A":  # TCP_LISTEN
            host_hex, port_hex = address.split(":")
            host = socket.inet_ntoa(bytes.fromhex(host_hex)[::-1])
            found.add((host, int(port_hex, 16)))
    return found


def test_metrics_dir_in_runtime_dir(iris_runtime: Running) -> None:
    response = iris_runtime.get("/metrics")
    assert response.status_code == 200
    assert "kiln_requests_total" in response.text
    assert any((iris_runtime.runtime_dir / "metrics").iterdir())
