"""Limits against the real runtime, through nginx and without it: body and header size, slow
and idle clients, the request timeout without nginx (with nginx: tests/runtime/test_lifecycle.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kiln.runtime.layout import RuntimeLayout
from kiln.runtime.nginx import nginx_config, render_nginx_conf
from kiln.server import client_limits
from kiln.settings import RuntimeSettings
from tests.runtime.conftest import StartRuntime
from tests.runtime.raw_clients import (
    head_with_header,
    idle_keepalive_connections,
    read_answer,
    send_head,
    slowloris,
    still_open,
    stream_body,
)
from tests.runtime.running import (
    Running,
    free_port,
    remove_dir,
    running,
    runtime_command,
    runtime_env,
    short_tmp_dir,
)
from tests.runtime.scoring import iris_expected, iris_request, slow_request

BODY_LIMIT = 64 * 1024
MODES = ["nginx", "no-nginx"]


@pytest.fixture(scope="module")
def direct_runtime(
    model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """sklearn_iris served by one uvicorn worker facing clients itself (DISABLE_NGINX), 64 KiB bodies."""
    port = free_port()
    runtime_dir = short_tmp_dir("kiln-rt-")
    extra = {"KILN_DISABLE_NGINX": "true", "KILN_WORKERS": "1", "KILN_MAX_BODY_SIZE": "64k"}
    env = runtime_env(model_dir("sklearn_iris"), port, runtime_dir, extra)
    try:
        with running(runtime_command(), env, port, runtime_dir, tmp_path_factory.mktemp("direct")) as run:
            run.wait_ready()
            yield run
    finally:
        remove_dir(runtime_dir)


@pytest.fixture(params=MODES)
def served(request: pytest.FixtureRequest) -> Running:
    """The iris runtime behind nginx (tests/runtime/conftest.py, 64 KiB bodies), or without nginx."""
    name = "iris_runtime" if request.param == "nginx" else "direct_runtime"
    run: Running = request.getfixturevalue(name)
    return run


def _assert_still_serves(run: Running, model: Path) -> None:
    response = run.post("/invocations", iris_request(model), timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": iris_expected(model)}


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_body_over_the_limit_is_refused_before_it_is_all_sent(
    served: Running, model_dir: Callable[[str], Path], chunked: bool
) -> None:
    budget = 256 * 1024 * 1024
    streamed = stream_body(served.port, budget=budget, chunked=chunked)
    answer = streamed.answer
    assert answer.status == 413, answer
    assert answer.headers["content-type"] == "application/json"
    assert b'"error_code":"REQUEST_LIMIT_EXCEEDED"' in answer.body
    # The refusal came while the client was still sending: the server never took in the 256 MiB.
    assert streamed.sent < 64 * 1024 * 1024, f"{streamed.sent} bytes sent before the 413"
    _assert_still_serves(served, model_dir("sklearn_iris"))


@pytest.mark.parametrize("size", [40 * 1024, 20 * 1024 * 1024], ids=["40KiB", "20MiB"])
def test_oversized_header_gets_json_431(served: Running, model_dir: Callable[[str], Path], size: int) -> None:
    answer = send_head(served.port, head_with_header(size))
    assert answer.status == 431, answer
    assert answer.headers["content-type"] == "application/json"
    assert b'"error_code":"REQUEST_LIMIT_EXCEEDED"' in answer.body
    assert send_head(served.port, head_with_header(6 * 1024)).status == 200  # a large but fair header
    _assert_still_serves(served, model_dir("sklearn_iris"))


@pytest.mark.parametrize(
    ("settings", "directives"),
    [
        (RuntimeSettings(), ["large_client_header_buffers 4 8k;", "client_header_timeout 10s;"]),
        (
            RuntimeSettings(max_header_size=12 * 1024, client_timeout=1.5),
            [
                "large_client_header_buffers 2 8k;",
                "client_header_timeout 1500ms;",
                "client_body_timeout 1500ms;",
            ],
        ),
        (RuntimeSettings(max_header_size=2048), ["large_client_header_buffers 1 2k;"]),
    ],
    ids=["default", "12k-1.5s", "2k"],
)
def test_header_limits_are_the_same_with_and_without_nginx(
    settings: RuntimeSettings, directives: list[str]
) -> None:
    conf = render_nginx_conf(
        nginx_config(settings, RuntimeLayout(Path("/tmp/kiln")), workers=1, cpus=1, open_files=1024)
    )
    for directive in directives:  # nginx: whole 8 KiB buffers (one per line) covering the workers' limit
        assert directive in conf
    protocol = client_limits.limited(
        "httptools", max_header_size=settings.max_header_size, client_timeout=settings.client_timeout
    )
    assert (protocol.max_header_size, protocol.client_timeout) == (
        settings.max_header_size,
        settings.client_timeout,
    )
    assert protocol.__name__ == "LimitedHttpToolsProtocol"
    assert client_limits.MAX_HEADER_BYTES == 4 * 8 * 1024 == RuntimeSettings().max_header_size
    assert client_limits.HEADER_TIMEOUT == client_limits.BODY_TIMEOUT == RuntimeSettings().client_timeout


@pytest.mark.slow
def test_slow_clients_do_not_block_others(
    iris_runtime: Running, direct_runtime: Running, model_dir: Callable[[str], Path]
) -> None:
    """Slowloris against both modes at once; normal requests keep being served meanwhile."""
    model = model_dir("sklearn_iris")
    body, expected = iris_request(model), iris_expected(model)
    counts = {"head": 40, "body": 20, "silent_body": 20, "idle": 20}
    runs = {"nginx": iris_runtime, "no-nginx": direct_runtime}
    served = {mode: 0 for mode in runs}
    with (
        slowloris(iris_runtime.port, **counts) as nginx_attack,
        slowloris(direct_runtime.port, **counts) as direct,
    ):
        attacks = {"nginx": nginx_attack, "no-nginx": direct}
        until = time.monotonic() + client_limits.HEADER_TIMEOUT + 3
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < until:
                for mode, run in runs.items():
                    response = client.post(
                        run.url + "/invocations", content=body, headers={"Content-Type": "application/json"}
                    )
                    assert response.status_code == 200, (mode, response.text)
                    assert response.json() == {"predictions": expected}
                    served[mode] += 1
                time.sleep(0.05)
        results = {mode: attack.stop() for mode, attack in attacks.items()}
    for mode, result in results.items():
        assert served[mode] >= 20, (mode, served)
        # Heads that never end, bodies that stopped and connections that never spoke were dropped...
        for kind in ("head", "silent_body", "idle"):
            assert result.still_open(kind) == 0, (mode, kind, result)
            assert set(result.answers[kind]) <= {0, 408}, (mode, kind, result.answers[kind])
        # ...a body still arriving, however slowly, was not: it holds a connection, never a worker.
        assert result.still_open("body") == counts["body"], (mode, result)


def test_hundreds_of_idle_keepalive_connections(served: Running, model_dir: Callable[[str], Path]) -> None:
    ping = b"GET /ping HTTP/1.1\r\nHost: kiln\r\n\r\n"
    idle = idle_keepalive_connections(served.port, 400, ping)
    try:
        for _ in range(10):
            _assert_still_serves(served, model_dir("sklearn_iris"))
        assert all(still_open(sock) for sock in idle)  # none was dropped to make room
        for sock in idle:  # and each can still be used
            sock.sendall(ping)
        answers = [read_answer(sock).status for sock in idle]
        assert answers == [200] * len(idle)
    finally:
        for sock in idle:
            sock.close()


def test_request_timeout_without_nginx(start_runtime: StartRuntime, model_dir: Callable[[str], Path]) -> None:
    """The app's JSON 504 without nginx too, and a following request is served."""
    env = {"KILN_DISABLE_NGINX": "true", "KILN_WORKERS": "1", "KILN_REQUEST_TIMEOUT": "2"}
    run = start_runtime(model_dir("slow_predict"), env=env)
    run.wait_ready()
    response = run.post("/invocations", slow_request(6))
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error_code"] == "DEADLINE_EXCEEDED"
    # The stuck worker drains and is replaced; the next request waits for it, then succeeds.
    following = run.post("/invocations", slow_request(0.1), timeout=60)
    assert following.status_code == 200, following.text
    assert following.json() == {"predictions": [0.1]}
