"""Faults under load, in real containers: a killed worker, SIGTERM, restart, out of memory, a broken model.

Every drill runs :class:`CountedLoad` against the container while the fault happens and
asserts on what each request saw. The tests record their numbers for docs/reliability.md
(see tests/trials.py).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import Built, Images
from tests.e2e.containers import Container, container
from tests.e2e.counted_load import CLOSED, REFUSED, CountedLoad
from tests.trials import load_seconds, record_trial

from kiln import contract
from kiln.backends.docker.builder import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RecordProperty = Callable[[str, object], None]
AREA = "faults"
CONCURRENCY = 4
MEMORY_LIMIT = "400m"
"""Room for nginx, the supervisor and two workers with pandas and MLflow (~140 MiB each), not for a hog."""


def hog_request(seconds: float = 0.0, megabytes: int = 0) -> str:
    return json.dumps(
        {"dataframe_split": {"columns": ["seconds", "megabytes"], "data": [[seconds, megabytes]]}}
    )


@pytest.fixture(scope="module")
def hog_image(images: Images, model_dir: Callable[[str], Path]) -> Built:
    return images.build("memory-hog", "-m", str(model_dir("memory_hog")))


@pytest.fixture(scope="module")
def load_raises_image(images: Images, model_dir: Callable[[str], Path]) -> Built:
    return images.build("load-raises", "-m", str(model_dir("load_raises")), "--no-load-check")


@pytest.fixture
def hog(docker_builder: DockerBuilder, hog_image: Built) -> Iterator[Callable[..., Container]]:
    """``hog(*docker_run_args, workers=2)``: a ready container of the memory_hog model, removed afterwards."""
    with ExitStack() as stack:

        def start(*args: str, workers: int = 2) -> Container:
            running = stack.enter_context(
                container(docker_builder.cli, hog_image.tag, *args, workers=workers)
            )
            running.wait_ready()
            _wait_log(running, rf"ready \({workers}/{workers}\)", 120)
            return running

        yield start


def test_killed_worker_is_replaced_and_only_its_requests_fail(
    hog: Callable[..., Container], record_property: RecordProperty
) -> None:
    running = hog()
    phase = load_seconds()
    with CountedLoad(_address(running), contract.PORT, hog_request(), concurrency=CONCURRENCY) as load:
        time.sleep(phase)
        victim = _worker_pids(running)[0]
        since = dt.datetime.now(dt.timezone.utc)
        killed = load.mark("kill")  # before docker exec returns, the worker is gone and nginx has answered
        assert running.docker("exec", running.name, "sh", "-c", f"kill -KILL {victim}").returncode == 0
        replaced = _wait_log(
            running, r"worker \d+ ready \(2/2\)", 120, after=f"worker {victim} died", since=since
        )
        load.mark("replaced")
        time.sleep(phase)
        tally = load.stop()
    logs = running.logs()
    failed = tally.failed()
    recovery = replaced - killed
    record_trial(
        record_property,
        area=AREA,
        scenario="SIGKILL one of 2 uvicorn workers during load (4 clients)",
        attempts=len(tally.outcomes),
        outcome=f"{tally.summary()}; the failures were in flight on the killed worker; "
        f"a new worker was serving {recovery:.1f} s later",
    )
    assert f"worker {victim} died (signal SIGKILL); starting a new one" in logs
    assert len(_worker_pids(running)) == 2 and victim not in _worker_pids(running)
    # Only requests in flight on the killed worker fail: nginx answers them 502.
    assert len(failed) <= CONCURRENCY, tally.summary()
    assert {o.result for o in failed} <= {"502"}, tally.summary()
    assert all(o.end >= killed for o in failed)
    after = tally.between(tally.marks["replaced"])
    assert after and all(o.ok for o in after), tally.summary(after)


def test_sigterm_under_load_finishes_every_accepted_request_and_exits_0(
    hog: Callable[..., Container], record_property: RecordProperty
) -> None:
    running = hog("--env", "KILN_GRACE_PERIOD=25")
    host = _address(running)
    phase = load_seconds()
    with (
        CountedLoad(host, contract.PORT, hog_request(), concurrency=CONCURRENCY) as load,
        ThreadPoolExecutor(2) as pool,
    ):
        time.sleep(phase)
        # Two slow requests are inside predict when SIGTERM arrives; they must still be answered.
        slow = [pool.submit(_post, host, hog_request(seconds=2.0)) for _ in range(2)]
        time.sleep(0.5)
        stopped_at = load.mark("sigterm")
        stop = running.docker("stop", "--time", "30", running.name, timeout=60)
        took = time.monotonic() - stopped_at
        slow_statuses = [f.result().status_code for f in slow]
        tally = load.stop()
    state = running.state()
    before, after = tally.between(0, stopped_at), tally.between(stopped_at)
    accepted_failures = [o for o in after if o.result not in ("200", REFUSED, CLOSED)]
    closed = [o for o in after if o.result == CLOSED]
    record_trial(
        record_property,
        area=AREA,
        scenario="docker stop -t 30 (SIGTERM) during load, 2 requests inside a 2 s predict",
        attempts=len(tally.outcomes),
        outcome=f"before: {tally.summary(before)}; after SIGTERM: {tally.summary(after)}; "
        f"slow requests: {slow_statuses}; exit {state['ExitCode']} after {took:.1f} s",
    )
    assert stop.returncode == 0 and state["ExitCode"] == 0, running.logs()[-3000:]
    assert took < 30
    assert slow_statuses == [200, 200]
    assert all(o.ok for o in before), tally.summary(before)
    # After SIGTERM a request is answered 200, or never accepted: refused at connect, or its
    # connection closed without a byte of answer (at most once per client: an idle keep-alive
    # connection closed by nginx, or one still in the listen queue when nginx closed it).
    assert not accepted_failures, tally.summary(after)
    assert len(closed) <= CONCURRENCY, tally.summary(after)
    assert "SIGTERM received: finishing in-flight requests" in running.logs()


def test_docker_restart_under_load_serves_again(
    hog: Callable[..., Container], record_property: RecordProperty
) -> None:
    running = hog(workers=1)
    phase = load_seconds()
    with CountedLoad(_address(running), contract.PORT, hog_request(), concurrency=CONCURRENCY) as load:
        time.sleep(phase)
        restarted_at = load.mark("restart")
        assert running.docker("restart", "--time", "30", running.name, timeout=90).returncode == 0
        load.host = _address(running)  # the same address unless docker handed out another one
        running.wait_ready()
        ready_at = load.mark("ready")
        time.sleep(phase)
        tally = load.stop()
    during, after = tally.between(restarted_at, ready_at), tally.between(ready_at)
    down = next((o for o in tally.between(restarted_at) if not o.ok), None)
    up = next((o for o in tally.between(down.start) if o.ok), None) if down else None
    downtime = f"{up.end - down.start:.1f} s" if up and down else "none seen"
    record_trial(
        record_property,
        area=AREA,
        scenario="docker restart -t 30 during load",
        attempts=len(tally.outcomes),
        outcome=f"during the restart: {tally.summary(during)}; once /ping said 200: {tally.summary(after)}; "
        f"from the first failed request to the next 200: {downtime}",
    )
    assert after and all(o.ok for o in after), tally.summary(after)
    # While it restarts, requests are refused or get nginx's JSON 503 (no worker ready yet).
    assert {o.result for o in during} <= {"200", "503", REFUSED, CLOSED}, tally.summary(during)


def test_out_of_memory_worker_is_reported_and_replaced_then_repeated_ooms_exit_1(
    hog: Callable[..., Container], record_property: RecordProperty
) -> None:
    running = hog("--memory", MEMORY_LIMIT, "--memory-swap", MEMORY_LIMIT)
    host = _address(running)
    phase = load_seconds()
    with CountedLoad(host, contract.PORT, hog_request(), concurrency=2) as load:
        time.sleep(phase)
        oom_at = load.mark("oom")
        since = dt.datetime.now(dt.timezone.utc)
        hog_answer = _post(host, hog_request(megabytes=600))
        _wait_log(running, r"worker \d+ ready \(2/2\)", 120, after="likely out of memory", since=since)
        load.mark("replaced")
        time.sleep(phase)
        tally = load.stop()
    logs = running.logs()
    message = re.search(r"worker \d+ was killed by SIGKILL, likely out of memory \([^)]*\)", logs)
    after = tally.between(tally.marks["replaced"])

    # Out of memory again and again: the crash-loop guard stops the container with an error.
    deadline = time.monotonic() + 120
    while running.state()["Running"] and time.monotonic() < deadline:
        try:
            status = _post(host, hog_request(megabytes=600), timeout=30).status_code
        except httpx.HTTPError:
            status = 0  # nginx has stopped
        if status != 502:
            time.sleep(0.2)  # no worker ready yet (503), or stopping
    state = running.wait_exit(60)
    final_logs = running.logs()
    reported = final_logs.count("likely out of memory")
    record_trial(
        record_property,
        area=AREA,
        scenario=f"a request makes a worker allocate 600 MiB under --memory {MEMORY_LIMIT}, during load",
        attempts=reported,
        outcome=f"the hog got {hog_answer.status_code}; log: '{message.group(0) if message else 'none'}'; "
        f"load: {tally.summary(tally.between(oom_at))}; replaced, then repeated OOMs "
        f"stopped the container with exit {state['ExitCode']} ({reported} OOM kills reported)",
    )
    assert hog_answer.status_code == 502 and hog_answer.json()["error_code"] == "INTERNAL_ERROR"
    assert message is not None, logs[-4000:]
    assert "container memory limit 400 MiB" in message.group(0)
    assert after and all(o.ok for o in after), tally.summary(after)
    assert len(tally.failed()) <= 2, tally.summary()  # the other client's request, if it hit the hog worker
    assert state["ExitCode"] == 1
    assert reported >= 5
    # The OOM killer may pick the zygote too (it holds the model), or a new zygote still loading it:
    # each way the supervisor says why it stops, and exits 1.
    stops = (
        "workers died within 60 s, stopping instead of restarting",
        "too many deaths, stopping",
        "before the model was loaded",
    )
    assert any(stop in final_logs for stop in stops), final_logs[-4000:]


def test_model_that_fails_to_load_exits_non_zero_and_never_answers_ping(
    docker_builder: DockerBuilder, load_raises_image: Built, record_property: RecordProperty
) -> None:
    pings: list[int] = []
    with container(docker_builder.cli, load_raises_image.tag) as running:
        host = _address(running)
        deadline = time.monotonic() + 120
        while running.state()["Running"] and time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                pings.append(httpx.get(f"http://{host}:{contract.PORT}/ping", timeout=3).status_code)
            time.sleep(0.1)
        state = running.wait_exit(60)
        logs = running.logs()
    record_trial(
        record_property,
        area=AREA,
        scenario="a model whose load_context raises",
        attempts=len(pings),
        outcome=f"/ping polled {len(pings)} times: {sorted(set(pings))}, never 200; "
        f"the container exited {state['ExitCode']}, the model's error in its log",
    )
    assert state["ExitCode"] == 1
    assert 200 not in pings and pings, pings
    assert "deliberate failure while loading the model" in logs
    assert "before the model was loaded" in logs


def _address(running: Container) -> str:
    """The container's IP on the bridge network (no docker-proxy in between)."""
    result = running.docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", running.name)
    address = result.stdout.strip()
    assert address, result.stderr
    return address


def _worker_pids(running: Container) -> list[int]:
    """Every worker: forked by the zygote (named kiln-worker) or started as ``-m kiln.runtime.worker``."""
    # $w keeps this script's own command line from matching.
    script = (
        'w=kiln.runtime.worker; for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = kiln-worker ] '
        '&& echo "$d/" && continue; case "$(tr "\\0" " " < $d/cmdline 2>/dev/null)" in '
        '*" -m $w "*) echo "$d/";; esac; done'
    )
    result = running.docker("exec", running.name, "sh", "-c", script)
    return sorted(int(line.split("/")[2]) for line in result.stdout.split())


def _wait_log(
    running: Container, pattern: str, timeout: float, *, after: str = "", since: dt.datetime | None = None
) -> float:
    """Wait until ``pattern`` is in the log (after the first ``after`` line, if given); returns when.

    With ``since``, only the log written after it is read: under load the access log grows
    fast, and reading all of it five times a second would slow the drill down.
    """
    window = ("--since", since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) if since else ()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = running.docker("logs", *window, running.name)
        logs = result.stdout + result.stderr
        start = logs.find(after) if after else 0
        if start >= 0 and re.search(pattern, logs[start:]):
            return time.monotonic()
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in the log after {timeout:.0f} s:\n{running.logs()[-4000:]}")


def _post(host: str, body: str, timeout: float = 60) -> httpx.Response:
    return httpx.post(
        f"http://{host}:{contract.PORT}/invocations",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=timeout,
    )
