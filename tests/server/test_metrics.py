"""``GET /metrics``: request counts, latency, in-flight and timeouts, summed across worker processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kiln.server.metrics import mark_worker_dead, prepare_metrics_dir
from tests.server.cases import GOOD
from tests.server.serving import ProcessServer

GOOD_IRIS = next(c for c in GOOD if c.id == "split")


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(url + "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _requests(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], status: str) -> float:
    key = ("kiln_requests_total", (("method", "POST"), ("path", "/invocations"), ("status", status)))
    return samples.get(key, 0.0)


def _score(url: str, body: bytes = GOOD_IRIS.body) -> int:
    return httpx.post(url + "/invocations", content=body, headers=GOOD_IRIS.headers).status_code


def test_counts_move(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("sklearn_iris")
    before = _samples(url)
    assert [_score(url) for _ in range(3)] == [200, 200, 200]
    assert _score(url, b"{not json") == 400
    httpx.get(url + "/no-such-path")
    after = _samples(url)
    assert _requests(after, "200") - _requests(before, "200") == 3
    assert _requests(after, "400") - _requests(before, "400") == 1
    other = ("kiln_requests_total", (("method", "GET"), ("path", "other"), ("status", "404")))
    assert after[other] - before.get(other, 0.0) == 1
    count = ("kiln_request_duration_seconds_count", (("path", "/invocations"),))
    assert after[count] - before.get(count, 0.0) == 4
    assert ("kiln_requests_in_flight", ()) in after


def test_metrics_can_be_turned_off(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("sklearn_iris", metrics=False)
    assert _score(url) == 200
    answer = httpx.get(url + "/metrics")
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert "KILN_METRICS" in answer.json()["message"]


def test_workers_sharing_a_metrics_dir_are_summed(
    process_server: Callable[..., ProcessServer], tmp_path: Path
) -> None:
    env = prepare_metrics_dir(str(tmp_path / "runtime"))
    metrics_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    assert metrics_dir.is_dir() and not any(metrics_dir.iterdir())
    first, second = (process_server("sklearn_iris", wait=False, **env) for _ in range(2))
    first.start()  # both load the model at the same time
    second.start()
    assert [_score(first.url) for _ in range(3)] == [200] * 3
    assert [_score(second.url) for _ in range(2)] == [200] * 2
    assert _requests(_samples(first.url), "200") == 5
    assert _requests(_samples(second.url), "200") == 5

    pid = second.proc.pid
    assert list(metrics_dir.glob(f"gauge_livesum_{pid}.db"))
    second.stop()
    mark_worker_dead(pid)
    assert not list(metrics_dir.glob(f"gauge_livesum_{pid}.db"))
    # the dead worker's requests still count
    assert _requests(_samples(first.url), "200") == 5

    again = prepare_metrics_dir(str(tmp_path / "runtime"))
    assert again == env
    assert not any(metrics_dir.iterdir()), "prepare_metrics_dir starts from an empty directory"
