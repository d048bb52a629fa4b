"""Micro-batching with a slow model: requests really share a predict call, and the request timeout,
the stuck-worker handling, the queue limit and its 503s keep working (real processes, real HTTP)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from kiln.server.metrics import prepare_metrics_dir
from tests.server.serving import ProcessServer, wait_until

pytestmark = pytest.mark.slow


def _seconds(value: float) -> dict[str, object]:
    return {"dataframe_records": [{"seconds": value}]}


def _post(url: str, seconds: float) -> httpx.Response:
    return httpx.post(url + "/invocations", json=_seconds(seconds), timeout=60)


def _all_at_once(url: str, seconds: list[float]) -> tuple[list[httpx.Response], float]:
    with ThreadPoolExecutor(len(seconds)) as pool:
        started = time.monotonic()
        answers = list(pool.map(lambda s: _post(url, s), seconds))
    return answers, time.monotonic() - started


def test_slow_requests_share_one_predict_call(process_server: Callable[..., ProcessServer]) -> None:
    """Eight 0.4 s requests: one after the other 3.2 s; batched, the first alone then seven together."""
    batched = process_server("slow_predict", KILN_MAX_BATCH_SIZE="8", KILN_MAX_BATCH_DELAY="50")
    unbatched = process_server("slow_predict")
    answers, batched_time = _all_at_once(batched.url, [0.4] * 8)
    reference, unbatched_time = _all_at_once(unbatched.url, [0.4] * 8)
    assert [a.status_code for a in answers] == [200] * 8
    assert [a.content for a in answers] == [r.content for r in reference] == [b'{"predictions":[0.4]}'] * 8
    assert unbatched_time > 3.0
    assert batched_time < 2.0, f"batched {batched_time:.2f} s, unbatched {unbatched_time:.2f} s"


def test_a_request_whose_deadline_passes_while_waiting_for_its_batch_gets_504_and_never_runs(
    process_server: Callable[..., ProcessServer],
) -> None:
    """A 1.5 s batch delay and a 1 s request timeout: the request that finds the worker busy waits for
    company past its deadline, and is answered 504 'was still queued'; the worker keeps serving."""
    server = process_server(
        "slow_predict", KILN_REQUEST_TIMEOUT="1", KILN_MAX_BATCH_SIZE="8", KILN_MAX_BATCH_DELAY="1500"
    )
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(_post, server.url, 0.3)
        time.sleep(0.1)
        started = time.monotonic()
        waiting = pool.submit(_post, server.url, 0.0)
        late = waiting.result()
        elapsed = time.monotonic() - started
    assert first.result().status_code == 200
    assert late.status_code == 504
    assert late.json() == {
        "error_code": "DEADLINE_EXCEEDED",
        "message": "Request processing time exceeded limit: the request did not finish within the "
        "request timeout of 1 s (was still queued)",
    }
    assert 0.9 < elapsed < 1.45
    metrics = httpx.get(server.url + "/metrics").text
    assert 'kiln_predict_timeouts_total{state="queued"} 1.0' in metrics
    assert _post(server.url, 0.0).status_code == 200  # alone on an idle worker: at once
    assert server.proc.poll() is None


def test_stuck_batch_gets_504_and_the_worker_drains_and_exits(
    process_server: Callable[..., ProcessServer], tmp_path: Path
) -> None:
    """As without batching: the stuck prediction's request gets 504, the one queued behind it is
    served by a fresh thread, then the worker exits to be replaced."""
    metrics_env = prepare_metrics_dir(str(tmp_path / "runtime"))
    server = process_server("slow_predict", KILN_REQUEST_TIMEOUT="2", KILN_MAX_BATCH_SIZE="8", **metrics_env)
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        stuck = pool.submit(_post, server.url, 6)
        time.sleep(0.5)
        behind = pool.submit(_post, server.url, 0)
        answer, queued = stuck.result(), behind.result()
    assert answer.status_code == 504
    assert answer.json()["message"].endswith("request timeout of 2 s (was still running)")
    assert queued.status_code == 200, queued.text
    assert queued.json() == {"predictions": [0.0]}
    assert wait_until(lambda: server.proc.poll() is not None, timeout=15)
    assert time.monotonic() - started < 6
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_env["PROMETHEUS_MULTIPROC_DIR"])
    assert registry.get_sample_value("kiln_predict_timeouts_total", {"state": "running"}) == 1.0


def test_the_queue_limit_still_answers_503(process_server: Callable[..., ProcessServer]) -> None:
    """KILN_MAX_QUEUE counts batched requests too: beyond it, 503 with Retry-After at once."""
    server = process_server("slow_predict", KILN_MAX_QUEUE="2", KILN_MAX_BATCH_SIZE="8")
    answers, _ = _all_at_once(server.url, [0.5] * 6)
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) >= 2
    assert set(statuses) == {200, 503}
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "KILN_MAX_QUEUE=2" in refused.json()["message"]
