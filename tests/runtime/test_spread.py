"""Requests through nginx are spread over the workers (one socket each, least_conn), also after a restart."""

from __future__ import annotations

import collections
import os
import re
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.runtime.conftest import StartRuntime
from tests.runtime.running import Running
from tests.runtime.scoring import slow_request

CLIENTS = 8
REQUESTS_PER_CLIENT = 5
PREDICT_SECONDS = 0.1
_SERVED = re.compile(r'"POST /invocations HTTP/1\.1" 200 .* worker=(.+)$', re.MULTILINE)


def _batch(run: Running) -> list[int]:
    """CLIENTS concurrent keep-alive clients, each sending REQUESTS_PER_CLIENT slow predictions in turn."""

    def client(_: int) -> list[int]:
        with httpx.Client(base_url=run.url, timeout=30) as http:
            return [
                http.post(
                    "/invocations",
                    content=slow_request(PREDICT_SECONDS),
                    headers={"Content-Type": "application/json"},
                ).status_code
                for _ in range(REQUESTS_PER_CLIENT)
            ]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [code for codes in pool.map(client, range(CLIENTS)) for code in codes]


def _served_by_socket(run: Running, since: int, expected: int) -> collections.Counter[str]:
    """How many of the ``expected`` answered predictions after output offset ``since`` each socket served."""
    deadline = time.monotonic() + 10  # nginx flushes its access log at least once a second
    while True:
        # On a failover nginx lists every socket it tried; the last one answered.
        sockets = [m.split(", ")[-1] for m in _SERVED.findall(run.output()[since:])]
        if len(sockets) >= expected or time.monotonic() > deadline:
            assert len(sockets) == expected, run.output()[since:]
            return collections.Counter(sockets)
        time.sleep(0.2)


def _assert_fair(counts: collections.Counter[str], total: int) -> None:
    assert len(counts) == 2, counts
    for socket_name, served in counts.items():
        assert re.fullmatch(r"unix:.*/uvicorn-[01]\.sock", socket_name), socket_name
        # least_conn with 8 clients and one prediction at a time per worker gives about half each;
        # a quarter leaves room for a noisy machine and still fails the 7/1 pinning this replaced.
        assert served >= total // 4, counts


def _wait_for(condition: Callable[[], bool], timeout: float, what: str, run: Running) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{run.output()}")
        time.sleep(0.1)


def test_keep_alive_clients_are_spread_over_both_workers_also_after_one_is_replaced(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    run = start_runtime(model_dir("slow_predict"), env={"KILN_WORKERS": "2"})
    run.wait_ready()
    _wait_for(lambda: "(2/2)" in run.output(), 60, "both workers ready", run)
    total = CLIENTS * REQUESTS_PER_CLIENT

    since = len(run.output())
    assert _batch(run) == [200] * total
    _assert_fair(_served_by_socket(run, since, total), total)

    # One worker dies: the other serves everything while its replacement loads the model.
    victim, survivor = run.workers()
    os.kill(victim, signal.SIGKILL)
    _wait_for(lambda: victim not in run.workers(), 10, f"worker {victim} to be reaped", run)
    since = len(run.output())
    assert _batch(run) == [200] * total
    _served_by_socket(run, since, total)

    # The replacement comes back on the dead worker's socket and gets its share again.
    _wait_for(lambda: len(run.workers()) == 2, 30, "the replacement worker", run)
    replacement = next(pid for pid in run.workers() if pid != survivor)
    _wait_for(lambda: f"worker {replacement} ready" in run.output(), 60, "the replacement ready", run)
    since = len(run.output())
    assert _batch(run) == [200] * total
    _assert_fair(_served_by_socket(run, since, total), total)


def test_with_one_worker_a_request_during_its_replacement_waits_for_the_new_worker(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    # No other worker to pass the request to: the slot's socket stays open in the supervisor,
    # so the connection waits in its backlog until the replacement has loaded the model.
    run = start_runtime(model_dir("slow_predict"), env={"KILN_WORKERS": "1"})
    run.wait_ready()
    [victim] = run.workers()
    os.kill(victim, signal.SIGKILL)
    _wait_for(lambda: victim not in run.workers(), 10, f"worker {victim} to be reaped", run)
    with httpx.Client(base_url=run.url, timeout=60) as http:
        answer = http.post(
            "/invocations", content=slow_request(0.01), headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 200, answer.text
    assert run.workers() and victim not in run.workers()
