"""nginx's own error answers, from the rendered config run by the real nginx: the app's error bodies.

The workers are stand-ins on the workers' unix sockets (none listening, one that hangs up, one
that never answers), so each page nginx owns can be provoked; under ``/v2`` the bodies are the
Open Inference Protocol's ``{"error": ...}``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from kiln.runtime import layout as runtime_layout
from kiln.runtime.layout import RuntimeLayout
from kiln.runtime.nginx import find_nginx, nginx_command, nginx_config, render_nginx_conf
from kiln.runtime.nginx_errors import NO_WORKER
from kiln.server import wording
from kiln.server.errors import error_body
from kiln.settings import RuntimeSettings
from tests.runtime.raw_clients import head_with_header, send_head
from tests.runtime.running import free_port, remove_dir, short_tmp_dir

MLFLOW_PATH = "/invocations"
V2_PATH = "/v2/models/mlflow-model/infer"
PATHS = [MLFLOW_PATH, V2_PATH]
MAX_BODY = 1024


@contextlib.contextmanager
def nginx_in_front(*, loading: bool = False) -> Iterator[tuple[str, RuntimeLayout]]:
    """The real nginx with kiln's config for two workers (1 KiB bodies, 1 s request timeout)."""
    root = short_tmp_dir("kiln-ngx-")
    layout = RuntimeLayout(root)
    lock = runtime_layout.prepare(layout, workers=2)
    port = free_port()
    settings = RuntimeSettings(host="127.0.0.1", port=port, max_body_size=MAX_BODY, request_timeout=1)
    config = nginx_config(settings, layout, workers=2, cpus=1, open_files=1024, user="root root")
    layout.nginx_conf.write_text(render_nginx_conf(config, loading=loading))
    logs = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # nginx's log lines land here, unread
    logs.bind(str(layout.log_socket))
    process = subprocess.Popen(nginx_command(find_nginx(), layout), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert process.poll() is None and time.monotonic() < deadline, process.stderr
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", layout
    finally:
        process.terminate()
        process.wait(10)
        logs.close()
        lock.close()
        remove_dir(root)


class StandInWorkers:
    """Unix-socket servers on the workers' sockets that ``hang_up`` at once or never answer."""

    def __init__(self, layout: RuntimeLayout, *, hang_up: bool) -> None:
        self.hang_up = hang_up
        self.held: list[socket.socket] = []
        self.servers: list[socket.socket] = []
        self.paths = layout.worker_sockets(2)
        for path in self.paths:
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(path))
            server.listen(16)
            self.servers.append(server)
            threading.Thread(target=self._serve, args=(server,), daemon=True).start()

    def _serve(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if self.hang_up:
                conn.recv(65536)
                conn.close()
            else:
                self.held.append(conn)

    def close(self) -> None:
        for sock in [*self.servers, *self.held]:
            sock.close()
        for path in self.paths:
            path.unlink()


@pytest.fixture(scope="module")
def front() -> Iterator[tuple[str, RuntimeLayout]]:
    with nginx_in_front() as started:
        yield started


def mlflow_error(error_code: str, message: str) -> dict[str, Any]:
    """The body the app gives for this error (error_class and sqlstate where MLflow has them)."""
    parsed: dict[str, Any] = json.loads(error_body(error_code, message))
    return parsed


def expected(path: str, error_code: str, message: str) -> dict[str, Any]:
    return {"error": message} if path.startswith("/v2") else mlflow_error(error_code, message)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("path", PATHS)
def test_body_over_the_limit(front: tuple[str, RuntimeLayout], path: str) -> None:
    answer = httpx.post(
        front[0] + path, content=b"x" * (MAX_BODY + 1), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/json"
    message = f"request body is larger than the limit of {MAX_BODY} bytes (KILN_MAX_BODY_SIZE)"
    assert answer.json() == expected(path, "REQUEST_LIMIT_EXCEEDED", message)
    if path == MLFLOW_PATH:
        assert "error_class" not in answer.json()  # MLflow leaves REQUEST_LIMIT_EXCEEDED unclassified


@pytest.mark.parametrize("path", PATHS)
def test_header_too_large(front: tuple[str, RuntimeLayout], path: str) -> None:
    answer = send_head(_port(front[0]), head_with_header(40 * 1024, path=path))
    assert answer.status == 431
    assert answer.headers["content-type"] == "application/json"
    message = "a request header, or all of them together, is too large"
    assert json.loads(answer.body) == expected(path, "REQUEST_LIMIT_EXCEEDED", message)


MALFORMED = {
    "Content-Length: ten": "malformed HTTP request (request line, headers or body framing); nginx refused it",
    "Transfer-Encoding: gzip": (
        "unsupported HTTP version or Transfer-Encoding; send HTTP/1.1 with Content-Length or chunked"
    ),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("header", list(MALFORMED))
def test_malformed_request(front: tuple[str, RuntimeLayout], path: str, header: str) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: kiln\r\n{header}\r\n\r\n".encode()
    answer = send_head(_port(front[0]), head)
    assert answer.status == 400
    assert answer.headers["content-type"] == "application/json"
    body = json.loads(answer.body)
    assert body == expected(path, "BAD_REQUEST", MALFORMED[header])
    if path == MLFLOW_PATH:
        assert (body["error_class"], body["sqlstate"]) == ("INVALID_PARAMETER_VALUE", "KAM00")


def test_a_request_line_nginx_cannot_parse_gets_the_mlflow_shape(front: tuple[str, RuntimeLayout]) -> None:
    """nginx knows no URI then ($request_uri is empty), not even one under /v2."""
    answer = send_head(_port(front[0]), b"BREW /v2 /pot HTTP/1.1\r\nHost: kiln\r\n\r\n")
    assert answer.status == 400
    assert json.loads(answer.body)["error_code"] == "BAD_REQUEST"
    too_long = send_head(
        _port(front[0]), f"GET {V2_PATH}?{'a' * 40000} HTTP/1.1\r\nHost: kiln\r\n\r\n".encode()
    )
    assert too_long.status == 414
    assert json.loads(too_long.body) == mlflow_error("REQUEST_LIMIT_EXCEEDED", "the request line is too long")


def test_nginx_own_404(front: tuple[str, RuntimeLayout]) -> None:
    answer = httpx.get(front[0] + "/.kiln-errors/400")  # internal: not reachable from outside
    assert answer.status_code == 404
    body = answer.json()
    assert body == mlflow_error("ENDPOINT_NOT_FOUND", "no endpoint at this path")
    assert (body["error_class"], body["sqlstate"]) == ("RESOURCE_NOT_FOUND", "KAM00")


@pytest.mark.parametrize("path", ["/ping", MLFLOW_PATH, "/v2/health/ready", V2_PATH])
def test_no_worker_listening_is_503(front: tuple[str, RuntimeLayout], path: str) -> None:
    answer = (
        httpx.post(front[0] + path, json={})
        if "infer" in path or "invoc" in path
        else httpx.get(front[0] + path)
    )
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.json() == expected(path, "TEMPORARILY_UNAVAILABLE", NO_WORKER)
    if not path.startswith("/v2"):
        assert (answer.json()["error_class"], answer.json()["sqlstate"]) == ("CLIENT_INTERNAL_ERROR", "XXM00")


@pytest.mark.parametrize("path", PATHS)
def test_a_worker_that_hangs_up_is_502(front: tuple[str, RuntimeLayout], path: str) -> None:
    workers = StandInWorkers(front[1], hang_up=True)
    try:
        answer = httpx.post(front[0] + path, json={})
    finally:
        workers.close()
    assert answer.status_code == 502
    message = "the worker handling this request closed the connection without an answer (see the server log)"
    assert answer.json() == expected(path, "INTERNAL_ERROR", message)


def test_a_worker_that_never_answers_is_504(front: tuple[str, RuntimeLayout]) -> None:
    """nginx waits request_timeout + 10 s (the app answers its own 504 first, when it can)."""
    workers = StandInWorkers(front[1], hang_up=False)
    try:
        with ThreadPoolExecutor(2) as pool:
            answers = dict(
                zip(PATHS, pool.map(lambda p: httpx.post(front[0] + p, json={}, timeout=30), PATHS))
            )
    finally:
        workers.close()
    message = f"{wording.TIMEOUT}: no answer from the worker within 11 s (nginx proxy timeout)"
    for path, answer in answers.items():
        assert answer.status_code == 504
        assert answer.json() == expected(path, "DEADLINE_EXCEEDED", message)


@pytest.mark.parametrize("path", ["/ping", MLFLOW_PATH, "/v2/health/live", "/v2"])
def test_the_loading_config_answers_503_in_each_shape(path: str) -> None:
    with nginx_in_front(loading=True) as (url, _):
        answer = httpx.get(url + path)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == expected(path, "TEMPORARILY_UNAVAILABLE", NO_WORKER)


def test_the_supervisor_renders_the_pages_without_loading_the_web_framework() -> None:
    """The supervisor imports the error bodies, not Starlette's responses (with anyio and more)."""
    script = (
        "import sys, kiln.runtime.supervisor, kiln.runtime.plan, kiln.runtime.nginx_errors\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert "kiln.server.errors" in loaded
    assert not loaded & {"starlette.responses", "starlette.requests", "anyio"}
