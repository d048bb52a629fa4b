"""The supervisor's life cycle with real processes: drain on SIGTERM, worker and nginx deaths,
model load failure, restarts in the same runtime directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.runtime.conftest import StartRuntime
from tests.runtime.running import short_tmp_dir, wait_for
from tests.runtime.scoring import iris_request, slow_request


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "Z"


def test_sigterm_finishes_the_in_flight_request_then_exits_0(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    run = start_runtime(model_dir("slow_predict"), env={"KILN_WORKERS": "1"})
    run.wait_ready()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(run.post, "/invocations", slow_request(3))
        time.sleep(1.0)  # the request is inside predict now
        run.process.send_signal(signal.SIGTERM)
        response = pending.result(timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [3.0]}
    assert run.wait_exit(30) == 0
    assert "SIGTERM received" in run.output()


def test_request_timeout_is_answered_by_the_app_then_the_worker_is_replaced(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    run = start_runtime(model_dir("slow_predict"), env={"KILN_WORKERS": "1", "KILN_REQUEST_TIMEOUT": "2"})
    run.wait_ready()
    [worker] = run.workers()
    started = time.monotonic()
    response = run.post("/invocations", slow_request(6))
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error_code"] == "DEADLINE_EXCEEDED"
    assert "nginx" not in body["message"]  # the app's answer, not nginx's proxy timeout (12 s)
    assert 1.5 < elapsed < 6
    # The worker stuck in predict retires itself; the runtime replaces it and keeps serving.
    wait_for(lambda: worker not in run.workers() and len(run.workers()) == 1, 30, "a new worker", run)
    run.wait_ready()
    assert run.post("/invocations", slow_request(0.1)).status_code == 200
    assert "stopped on its own after draining; starting a new one" in run.output()
    assert run.process.poll() is None


def test_grace_period_bounds_the_shutdown(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    run = start_runtime(model_dir("slow_predict"), env={"KILN_WORKERS": "1", "KILN_GRACE_PERIOD": "2"})
    run.wait_ready()
    workers = run.workers()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(run.post, "/invocations", slow_request(30))
        time.sleep(1.0)
        stopped_at = time.monotonic()
        run.process.send_signal(signal.SIGTERM)
        assert run.wait_exit(20) == 0
        elapsed = time.monotonic() - stopped_at
        try:
            status: int | str = pending.result(timeout=30).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
    assert elapsed < 6, f"stopping took {elapsed:.1f} s with a 2 s grace period"
    assert status != 200
    assert all(_gone(pid) for pid in workers)


def test_killed_worker_is_replaced_then_a_crash_loop_stops_the_runtime(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    model = model_dir("sklearn_iris")
    run = start_runtime(model, env={"KILN_WORKERS": "2"})
    run.wait_ready()
    wait_for(lambda: "ready (2/2)" in run.output(), 90, "both workers ready", run)
    before = run.workers()
    os.kill(before[0], signal.SIGKILL)
    # A request nginx writes in the instant the process dies is lost (a POST is never sent twice):
    # the requests go once the death is known; the other worker answers while the slot restarts.
    wait_for(lambda: "died (signal SIGKILL); starting a new one" in run.output(), 30, "the death", run)
    statuses = [run.post("/invocations", iris_request(model)).status_code for _ in range(20)]
    assert statuses == [200] * 20, run.output()
    wait_for(lambda: len(run.workers()) == 2 and before[0] not in run.workers(), 30, "a new worker", run)
    assert run.process.poll() is None

    # Workers that keep dying (5 within 60 s) stop everything instead of restarting forever.
    killed = {before[0]}
    deadline = time.monotonic() + 60
    while run.process.poll() is None and time.monotonic() < deadline:
        for pid in set(run.workers()) - killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.05)
    assert run.wait_exit(30) == 1
    assert len(killed) >= 5  # two may be killed at once just before the fifth death is seen
    assert "5 workers died within 60 s" in run.output()


def test_nginx_death_stops_everything_with_an_error(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    run = start_runtime(model_dir("sklearn_iris"), env={"KILN_WORKERS": "1"})
    run.wait_ready()
    nginx, workers = run.nginx_master(), run.workers()
    assert nginx is not None
    os.kill(nginx, signal.SIGKILL)
    assert run.wait_exit(30) == 1
    assert "nginx exited unexpectedly (signal SIGKILL)" in run.output()
    assert all(_gone(pid) for pid in workers)


def test_model_load_failure_exits_non_zero_and_never_ready(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    run = start_runtime(model_dir("load_raises"), env={"KILN_WORKERS": "1"})
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + 90
    while run.process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):  # nginx not listening yet, or already stopped
            answers.append(run.get("/ping", timeout=5))
        time.sleep(0.1)
    assert run.wait_exit(30) != 0
    output = run.output()
    assert "deliberate failure while loading the model" in output
    assert "before the model was loaded" in output
    assert answers, "nginx never answered while the model was loading"
    assert {a.status_code for a in answers} == {503}
    assert answers[0].json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


def test_restart_in_the_same_runtime_dir(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    """Like ``docker restart`` after a hard kill: stale socket and files are in /tmp/kiln."""
    model = model_dir("sklearn_iris")
    runtime_dir = short_tmp_dir("kiln-rt-")
    try:
        first = start_runtime(model, env={"KILN_WORKERS": "1"}, runtime_dir=runtime_dir)
        first.wait_ready()
        children = [pid for pid, _ in first.children()]
        first.process.kill()  # no clean-up at all
        first.wait_exit(10)
        # nginx and the worker notice their parent died and stop too.
        wait_for(lambda: all(_gone(pid) for pid in children), 30, "the children to stop", first)
        assert (runtime_dir / "uvicorn-0.sock").exists()

        second = start_runtime(model, env={"KILN_WORKERS": "1"}, runtime_dir=runtime_dir)
        second.wait_ready()
        assert second.post("/invocations", iris_request(model)).status_code == 200

        # A third runtime while the second one runs is refused instead of stealing its socket.
        third = start_runtime(model, env={"KILN_WORKERS": "1"}, runtime_dir=runtime_dir)
        assert third.wait_exit(60) == 1
        assert f"runtime directory '{runtime_dir}' is in use by another kiln runtime" in third.output()
        assert second.get("/ping").status_code == 200
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
