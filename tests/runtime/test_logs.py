"""nginx's logs never stall serving, and probes while the model loads log no connection errors."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.runtime.conftest import StartRuntime
from tests.runtime.running import free_port, remove_dir, runtime_env, short_tmp_dir, stop, wait_for_ping
from tests.runtime.scoring import iris_request

REQUESTS = 3000
"""Well past what filled the 64 KiB pipe before (about 950 requests' access-log lines)."""


def test_a_stdout_nobody_reads_does_not_stall_requests(model_dir: Callable[[str], Path]) -> None:
    model = model_dir("sklearn_iris")
    _serve_with_an_unread_output(model, iris_request(model), REQUESTS, 200)


def test_a_failing_model_logging_every_request_to_an_unread_output_does_not_stall(
    model_dir: Callable[[str], Path],
) -> None:
    # Each failed request logs a warning with the model's traceback (about 1 kB): a 64 KiB pipe
    # held ~60 of them before the workers' records went through the supervisor's relay.
    body = json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1]]}})
    _serve_with_an_unread_output(model_dir("predict_raises"), body, 600, 400)


def _serve_with_an_unread_output(model: Path, body: str, requests: int, status: int) -> None:
    port = free_port()
    runtime_dir = short_tmp_dir("kiln-rt-")
    read_end, write_end = os.pipe()  # the reader never reads: a paused `docker logs`, a Ctrl-S terminal
    env = runtime_env(model, port, runtime_dir, {"KILN_WORKERS": "1"})
    process = subprocess.Popen(
        [sys.executable, "-m", "kiln.runtime"], env=env, stdout=write_end, stderr=write_end
    )
    os.close(write_end)
    try:
        _wait_ready(port, process)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        slowest, answered = 0.0, 0
        for _ in range(requests):
            started = time.monotonic()
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            slowest = max(slowest, time.monotonic() - started)
            answered += response.status == status
        assert answered == requests
        assert slowest < 2.0, f"slowest request {slowest:.2f} s"
        assert process.poll() is None
    finally:
        stop(process)
        os.close(read_end)
        remove_dir(runtime_dir)


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    # Ten 200s running: the keep-alive connection the test then uses must not be an old nginx
    # worker's, which closes it when the reload to the proxying config completes.
    assert wait_for_ping(f"http://127.0.0.1:{port}", process, 120), "the runtime exited or never got ready"


def test_no_error_line_while_the_model_loads_and_access_lines_reach_stdout(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    model = model_dir("sklearn_iris")
    run = start_runtime(model, env={"KILN_WORKERS": "2"})
    statuses = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            status = run.get("/ping", timeout=2).status_code
        except httpx.HTTPError:
            status = 0  # nginx not listening yet
        statuses.add(status)
        if status == 200:
            break
        if status == 503:
            # The same answer for the other probe while loading (200 only if the model just got ready).
            statuses.add(run.get("/health", timeout=2).status_code)
        time.sleep(0.05)
    assert 503 in statuses and 200 in statuses and statuses <= {0, 503, 200}, statuses
    # The second worker comes up after the first: nginx must not try its socket before it serves.
    for _ in range(30):
        assert run.post("/invocations", iris_request(model), timeout=10).status_code == 200
        assert run.get("/ping", timeout=2).status_code == 200
        time.sleep(0.05)
    time.sleep(0.5)  # the supervisor relays the access line
    output = run.output()
    assert "[error]" not in output and "connect() failed" not in output, output
    assert '"POST /invocations HTTP/1.1" 200' in output
    assert '"GET /ping' not in output  # probes, answered 503 or 200, are not logged


def test_nginx_error_lines_reach_stderr(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    model = model_dir("sklearn_iris")
    run = start_runtime(model, env={"KILN_WORKERS": "1", "KILN_MAX_BODY_SIZE": "1k"})
    run.wait_ready()
    answer = run.post("/invocations", json.dumps({"inputs": "x" * 4096}))
    assert answer.status_code == 413
    time.sleep(0.5)
    assert "nginx [error] " in run.output() and "client intended to send too large body" in run.output()


def test_the_workers_log_records_reach_stderr_through_the_relay(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    run = start_runtime(model_dir("predict_raises"), env={"KILN_WORKERS": "1"})
    run.wait_ready()
    answer = run.post("/invocations", json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1]]}}))
    assert answer.status_code == 400
    time.sleep(0.5)
    output = run.output()
    assert "WARNING kiln.server.errors" in output and "deliberate error from predict" in output, output
    assert "raises_model.py" in output  # the traceback, whole, as one record
