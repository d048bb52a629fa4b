"""Streaming through the real runtime: nginx passes each event on as it comes, and a client that
disconnects from nginx stops the model's generation in the worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.runtime.conftest import StartRuntime
from tests.runtime.running import Running
from tests.server.serving import wait_until
from tests.server.sse import DONE, events, save_stream_model


@pytest.fixture
def served(start_runtime: StartRuntime, tmp_path: Path) -> Iterator[Running]:
    """The streaming test model served by ``python -m kiln.runtime serve``: nginx and one worker."""
    model = save_stream_model(tmp_path / "stream")
    run = start_runtime(model, env={"MLFLOW_MODELS_WORKERS": "1"}, args=("serve",))
    run.wait_ready()
    assert run.nginx_master() is not None
    yield run


def test_events_reach_the_client_through_nginx_as_they_are_produced(served: Running) -> None:
    body = {"prompt": "n", "chunks": 3, "delay": 0.8, "stream": True}
    response = requests.post(served.url + "/invocations", json=body, stream=True, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    started = time.monotonic()
    received = []
    for event in events(response):
        received.append((time.monotonic() - started, event))
    assert [event for _, event in received] == [{"index": i, "text": f"n{i}"} for i in range(3)] + [DONE]
    arrivals = [at for at, _ in received]
    # nginx held nothing back: each event came when the model made it, 0.8 s apart
    assert 0.5 < arrivals[1] - arrivals[0] < 1.5 and 0.5 < arrivals[2] - arrivals[1] < 1.5


def test_a_client_that_leaves_nginx_stops_the_generation(served: Running, tmp_path: Path) -> None:
    record = tmp_path / "produced.txt"
    body = {"prompt": "d", "chunks": 1000, "delay": 0.05, "record": str(record), "stream": True}
    response = requests.post(served.url + "/invocations", json=body, stream=True, timeout=30)
    stream = events(response)
    assert [next(stream) for _ in range(3)] == [{"index": i, "text": f"d{i}"} for i in range(3)]
    response.close()
    assert wait_until(lambda: "closed" in record.read_text(), timeout=10), served.output()
    produced = record.read_text().splitlines()
    assert produced[-1] == "closed"
    assert len(produced) - 1 < 30, produced  # nginx's buffers and the socket hold a few, not 1000
    time.sleep(0.5)
    assert len(record.read_text().splitlines()) == len(produced)
    after = requests.post(served.url + "/invocations", json={"prompt": "a", "chunks": 1}, timeout=30)
    assert after.json() == ["a0"]
