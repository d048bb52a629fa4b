"""The request timeout: 504 JSON, and a worker whose prediction is stuck replaces itself."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from kiln.server.metrics import prepare_metrics_dir
from kiln.server.timeout import PredictLane, PredictTimeout
from tests.server.serving import ProcessServer, wait_until


def _seconds(value: float) -> dict[str, object]:
    return {"dataframe_records": [{"seconds": value}]}


def test_stuck_prediction_gets_504_and_the_worker_drains_and_exits(
    process_server: Callable[..., ProcessServer], tmp_path: Path
) -> None:
    metrics_env = prepare_metrics_dir(str(tmp_path / "runtime"))
    server = process_server("slow_predict", KILN_REQUEST_TIMEOUT="2", **metrics_env)
    url = server.url + "/invocations"
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        stuck = pool.submit(httpx.post, url, json=_seconds(6), timeout=30)
        time.sleep(0.5)  # queued behind the stuck prediction
        queued = pool.submit(httpx.post, url, json=_seconds(0), timeout=30)
        answer = stuck.result()
        elapsed = time.monotonic() - started
        behind = queued.result()
    assert answer.status_code == 504
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error_code"] == "DEADLINE_EXCEEDED"
    assert "2 s" in answer.json()["message"]
    assert answer.json()["message"].startswith("Request processing time exceeded limit: ")  # MLflow's
    assert "error_class" not in answer.json()  # MLflow leaves DEADLINE_EXCEEDED unclassified
    assert 1.9 < elapsed < 4.5
    # the request queued behind it is served by a fresh thread, before the worker exits
    assert behind.status_code == 200, behind.text
    assert behind.json() == {"predictions": [0.0]}
    # then the worker stops on its own (the supervisor starts a fresh one), long before 6 s of sleep end
    assert wait_until(lambda: server.proc.poll() is not None, timeout=15)
    assert time.monotonic() - started < 6
    log = server.read_log()
    assert "overran the request timeout of 2 s" in log
    assert "will exit once its other in-flight requests are done" in log
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_env["PROMETHEUS_MULTIPROC_DIR"])
    assert registry.get_sample_value("kiln_predict_timeouts_total", {"state": "running"}) == 1.0
    assert (
        registry.get_sample_value(
            "kiln_requests_total", {"method": "POST", "path": "/invocations", "status": "504"}
        )
        == 1.0
    )


def test_prediction_within_the_timeout_is_answered(kiln_url: Callable[..., str]) -> None:
    answer = httpx.post(kiln_url("slow_predict", request_timeout=5.0) + "/invocations", json=_seconds(0.3))
    assert answer.status_code == 200
    assert answer.json() == {"predictions": [0.3]}


def test_lane_drops_a_job_whose_deadline_passes_in_the_queue() -> None:
    stuck: list[bool] = []
    timeouts: list[bool] = []
    release = threading.Event()
    ran: list[str] = []

    async def scenario() -> None:
        lane = PredictLane(0.3, on_stuck=lambda: stuck.append(True), on_timeout=timeouts.append)
        loop = asyncio.get_running_loop()

        def blocker() -> str:
            release.wait(5)
            ran.append("blocker")
            return "blocker"

        def quick() -> str:
            ran.append("quick")
            return "quick"

        first = asyncio.ensure_future(lane.run(blocker, deadline=loop.time() + 5))
        await asyncio.sleep(0.05)
        with pytest.raises(PredictTimeout) as queued:  # waits behind the blocker, which still runs
            await lane.run(quick, deadline=loop.time() + 0.2)
        assert not queued.value.started
        release.set()
        assert await first == "blocker"
        assert await lane.run(quick, deadline=loop.time() + 5) == "quick"
        lane.close()

    asyncio.run(scenario())
    assert timeouts == [False]
    assert stuck == [], "a job dropped from the queue is not a stuck worker"
    assert ran == ["blocker", "quick"], "the dropped job never ran"


def test_lane_replaces_a_stuck_thread_once() -> None:
    stuck: list[bool] = []
    release = threading.Event()

    async def scenario() -> None:
        lane = PredictLane(0.2, on_stuck=lambda: stuck.append(True))
        loop = asyncio.get_running_loop()
        for _ in range(2):
            with pytest.raises(PredictTimeout) as info:
                await lane.run(lambda: release.wait(5), deadline=loop.time() + 0.2)
            assert info.value.started
        assert await lane.run(lambda: 42, deadline=loop.time() + 5) == 42
        assert lane.stuck
        release.set()
        lane.close()

    asyncio.run(scenario())
    assert stuck == [True], "the worker is asked to exit once, however many predictions overran"


def test_lane_never_runs_a_cancelled_request() -> None:
    release = threading.Event()
    ran: list[str] = []

    async def scenario() -> None:
        lane = PredictLane(5)
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(lane.run(lambda: release.wait(5), deadline=loop.time() + 5))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(lane.run(lambda: ran.append("cancelled"), deadline=loop.time() + 5))
        await asyncio.sleep(0.05)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        assert await first is True
        assert await lane.run(lambda: ran.append("next"), deadline=loop.time() + 5) is None
        lane.close()

    asyncio.run(scenario())
    assert ran == ["next"]
