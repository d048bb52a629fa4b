"""The queue limit against the real runtime: beyond it a fast JSON 503 with Retry-After, below it
none, and health probes keep answering while the workers are overloaded."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kiln import contract
from kiln.errors import UsageError
from kiln.server.app import create_app
from kiln.settings import RuntimeSettings
from tests.runtime.running import (
    Running,
    free_port,
    remove_dir,
    running,
    runtime_command,
    runtime_env,
    short_tmp_dir,
)
from tests.runtime.scoring import slow_request
from tests.server.serving import ThreadServer

MAX_QUEUE = 4
MODES = ["nginx", "no-nginx"]


@pytest.fixture(scope="module", params=MODES)
def overloadable(
    request: pytest.FixtureRequest, model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """slow_predict on one worker with a queue of 4: ``kiln serve --max-queue 4`` (nginx), or
    ``KILN_MAX_QUEUE=4`` without nginx."""
    model = model_dir("slow_predict")
    port = free_port()
    runtime_dir = short_tmp_dir("kiln-rt-")
    log_dir = tmp_path_factory.mktemp("overload")
    if request.param == "nginx":
        command = [sys.executable, "-m", "kiln", "serve", "-m", str(model), "--port", str(port)]
        command += ["--workers", "1", "--max-queue", str(MAX_QUEUE), "--runtime-dir", str(runtime_dir)]
        env = runtime_env(model, port, runtime_dir)  # the flags win over its KILN_* variables
    else:
        command = runtime_command()
        extra = {"KILN_DISABLE_NGINX": "true", "KILN_WORKERS": "1", "KILN_MAX_QUEUE": str(MAX_QUEUE)}
        env = runtime_env(model, port, runtime_dir, extra)
    try:
        with running(command, env, port, runtime_dir, log_dir) as run:
            run.wait_ready()
            yield run
    finally:
        remove_dir(runtime_dir)


async def _burst(url: str, count: int, seconds: float) -> list[tuple[float, httpx.Response]]:
    """``count`` requests at once, each asking for ``seconds`` of predict; (elapsed, answer) each."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.monotonic()

        async def one() -> tuple[float, httpx.Response]:
            response = await client.post(
                url + "/invocations",
                content=slow_request(seconds),
                headers={"Content-Type": "application/json"},
            )
            return time.monotonic() - started, response

        return await asyncio.gather(*(one() for _ in range(count)))


def test_beyond_the_limit_excess_requests_get_503_at_once(overloadable: Running) -> None:
    answers = asyncio.run(_burst(overloadable.url, 5 * MAX_QUEUE, 1.0))
    served = [(t, r) for t, r in answers if r.status_code == 200]
    refused = [(t, r) for t, r in answers if r.status_code == 503]
    assert len(served) == MAX_QUEUE, [r.status_code for _, r in answers]
    assert len(refused) == 4 * MAX_QUEUE
    assert all(r.json() == {"predictions": [1.0]} for _, r in served)  # admitted requests are served right
    for _, response in refused:
        assert response.headers["content-type"] == "application/json"
        assert response.headers["retry-after"] == "1"
        body = response.json()
        assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert f"KILN_MAX_QUEUE={MAX_QUEUE}" in body["message"]
    # Refused at once: every 503 came back before the first admitted prediction (1 s) was done.
    assert max(t for t, _ in refused) < min(t for t, _ in served)
    assert overloadable.get("/ping").status_code == 200


def test_at_the_limit_nothing_is_refused(overloadable: Running) -> None:
    answers = asyncio.run(_burst(overloadable.url, MAX_QUEUE, 0.3))
    assert [r.status_code for _, r in answers] == [200] * MAX_QUEUE
    assert all(r.json() == {"predictions": [0.3]} for _, r in answers)


def test_probes_keep_answering_under_overload(overloadable: Running) -> None:
    """Probes (and /metrics) are never queued or refused, however many scoring requests wait."""
    stop = threading.Event()
    statuses: list[int] = []

    def hammer() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.post(
                    overloadable.url + "/invocations",
                    content=slow_request(0.2),
                    headers={"Content-Type": "application/json"},
                )
                statuses.append(response.status_code)

    threads = [threading.Thread(target=hammer) for _ in range(4 * MAX_QUEUE)]
    for thread in threads:
        thread.start()
    try:
        probes = 0
        until = time.monotonic() + 3
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < until:
                for path in ("/ping", "/health", "/metrics"):
                    assert client.get(overloadable.url + path).status_code == 200, path
                    probes += 1
                time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert probes >= 30
    assert statuses.count(503) > 0 and statuses.count(200) > 0, "the workers were not overloaded"
    assert set(statuses) == {200, 503}
    metrics = overloadable.get("/metrics").text
    assert 'kiln_requests_total{method="POST",path="/invocations",status="503"}' in metrics


def test_max_queue_0_turns_the_limit_off(model_dir: Callable[[str], Path]) -> None:
    settings = RuntimeSettings(model_dir=str(model_dir("slow_predict")), max_queue=0)
    server = ThreadServer(create_app(settings)).start()
    try:
        answers = asyncio.run(_burst(server.url, 20, 0.05))
    finally:
        server.stop()
    assert [r.status_code for _, r in answers] == [200] * 20


def test_max_queue_setting() -> None:
    assert RuntimeSettings().max_queue == contract.DEFAULT_MAX_QUEUE
    assert RuntimeSettings.from_env({"KILN_MAX_QUEUE": "0"}).max_queue == 0
    assert RuntimeSettings.from_env({"KILN_MAX_QUEUE": "32"}).to_env()["KILN_MAX_QUEUE"] == "32"
    with pytest.raises(UsageError, match="KILN_MAX_QUEUE='-1' must be at least 0"):
        RuntimeSettings.from_env({"KILN_MAX_QUEUE": "-1"})
    with pytest.raises(UsageError, match="KILN_MAX_QUEUE='many' is not a whole number"):
        RuntimeSettings.from_env({"KILN_MAX_QUEUE": "many"})
