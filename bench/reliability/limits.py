"""Limits: hostile and careless clients against the real runtime, through nginx and without it.

For each mode a ``python -m kiln.runtime`` serves ``sklearn_iris`` with a 64 KiB body limit;
raw-socket clients (tests/runtime/raw_clients.py) then send endless bodies, oversized heads,
slowloris connections and hundreds of idle keep-alive connections, and a ``slow_predict``
runtime gets predictions longer than its request timeout. Each row says how many were
tried and what came back; the same checks, smaller, are tests/runtime/test_limits.py.

    .venv/bin/python -m bench.reliability.limits [--quick]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
from tests.runtime.raw_clients import (
    head_with_header,
    idle_keepalive_connections,
    read_answer,
    send_head,
    slowloris,
    still_open,
    stream_body,
)
from tests.runtime.running import Running, free_port, running, runtime_command, runtime_env
from tests.runtime.scoring import iris_expected, iris_request, slow_request

from bench.reliability.table import Section, Trial, section_main
from kiln.server import client_limits

BODY_LIMIT = "64k"
MODES = {"nginx": {}, "no-nginx": {"KILN_DISABLE_NGINX": "true"}}
_JSON = "application/json"


class _Modes:
    """Runtimes started on demand, one per (model, mode, settings), stopped together."""

    def __init__(self, work: Path, models: Callable[[str], Path]) -> None:
        self.work = work
        self.models = models
        self.stack = ExitStack()

    def start(self, scenario: str, mode: str, **env: str) -> Running:
        port = free_port()
        runtime_dir = Path(tempfile.mkdtemp(prefix="kiln-rt-", dir="/tmp"))
        self.stack.callback(shutil.rmtree, runtime_dir, True)
        full = runtime_env(self.models(scenario), port, runtime_dir, {**MODES[mode], **env})
        run = self.stack.enter_context(
            running(runtime_command(), full, port, runtime_dir, self.work / "logs")
        )
        run.wait_ready()
        return run


def _serves(run: Running, model: Path) -> bool:
    response = run.post("/invocations", iris_request(model), timeout=10)
    return response.status_code == 200 and response.json() == {"predictions": iris_expected(model)}


def _bodies(run: Running, mode: str, model: Path, times: int) -> list[Trial]:
    trials = []
    for chunked in (True, False):
        results = [stream_body(run.port, budget=256 << 20, chunked=chunked) for _ in range(times)]
        ok = all(r.answer.status == 413 and b"REQUEST_LIMIT_EXCEEDED" in r.answer.body for r in results)
        most = max(r.sent for r in results) >> 10
        framing = "chunked, no Content-Length" if chunked else "Content-Length 256 MiB"
        trials.append(
            Trial(
                "limits",
                f"{mode}: 256 MiB body ({framing}) against a 64 KiB limit",
                times,
                f"{sum(r.answer.status == 413 for r in results)} x JSON 413 `REQUEST_LIMIT_EXCEEDED`, "
                f"at most {most:,} KiB sent before it; the next request served",
                ok and _serves(run, model),
            )
        )
    return trials


def _heads(run: Running, mode: str, model: Path, times: int) -> list[Trial]:
    trials = []
    for size, label in ((40 << 10, "40 KiB"), (20 << 20, "20 MiB")):
        answers = [send_head(run.port, head_with_header(size)) for _ in range(times)]
        statuses = sorted({a.status for a in answers})
        json_bodies = all(a.headers.get("content-type") == _JSON for a in answers)
        trials.append(
            Trial(
                "limits",
                f"{mode}: one {label} request header",
                times,
                f"status {', '.join(map(str, statuses))}, JSON body: {'yes' if json_bodies else 'no'}; "
                "the next request served",
                statuses == [431] and json_bodies and _serves(run, model),
            )
        )
    return trials


def _slowloris(runs: dict[str, Running], model: Path, per_kind: int) -> list[Trial]:
    counts = {"head": per_kind, "body": per_kind, "silent_body": per_kind, "idle": per_kind}
    body = iris_request(model)
    latencies: dict[str, list[float]] = {mode: [] for mode in runs}
    failures = dict.fromkeys(runs, 0)
    with ExitStack() as stack:
        attacks = {mode: stack.enter_context(slowloris(run.port, **counts)) for mode, run in runs.items()}
        until = time.monotonic() + client_limits.HEADER_TIMEOUT + 3
        with httpx.Client(timeout=5, headers={"Content-Type": _JSON}) as client:
            while time.monotonic() < until:
                for mode, run in runs.items():
                    started = time.monotonic()
                    try:
                        ok = client.post(run.url + "/invocations", content=body).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    latencies[mode].append(time.monotonic() - started)
                    failures[mode] += not ok
                time.sleep(0.05)
        results = {mode: attack.stop() for mode, attack in attacks.items()}
    trials = []
    for mode, result in results.items():
        dropped = {kind: result.opened[kind] - result.still_open(kind) for kind in counts}
        closed = [t for kind in ("head", "silent_body", "idle") for t in result.closed_after[kind]]
        worst = max(latencies[mode]) * 1000
        trials.append(
            Trial(
                "limits",
                f"{mode}: slowloris, {4 * per_kind} connections (heads and bodies a byte per 0.5 s, "
                f"silent bodies, idle) for {client_limits.HEADER_TIMEOUT + 3} s, normal requests meanwhile",
                len(latencies[mode]),
                f"{len(latencies[mode]) - failures[mode]} of {len(latencies[mode])} normal requests "
                f"served, slowest {worst:.0f} ms; slow heads, silent bodies and idle connections "
                f"dropped ({dropped['head'] + dropped['silent_body'] + dropped['idle']} of {3 * per_kind}, "
                f"after {min(closed, default=0):.1f}-{max(closed, default=0):.1f} s); bodies still "
                f"trickling kept open ({result.still_open('body')} of {per_kind})",
                failures[mode] == 0
                and all(result.still_open(kind) == 0 for kind in ("head", "silent_body", "idle")),
            )
        )
    return trials


def _idle(run: Running, mode: str, model: Path, count: int) -> Trial:
    ping = b"GET /ping HTTP/1.1\r\nHost: kiln\r\n\r\n"
    idle = idle_keepalive_connections(run.port, count, ping)
    try:
        served = sum(_serves(run, model) for _ in range(20))
        kept = sum(still_open(sock) for sock in idle)
        for sock in idle:
            sock.sendall(ping)
        again = sum(read_answer(sock).status == 200 for sock in idle)
    finally:
        for sock in idle:
            sock.close()
    return Trial(
        "limits",
        f"{mode}: {count} idle keep-alive connections, then 20 normal requests",
        count,
        f"{served} of 20 normal requests served; {kept} of {count} idle connections kept, "
        f"{again} of {count} answered again",
        served == 20 and kept == count and again == count,
    )


def _timeouts(run: Running, mode: str, times: int) -> Trial:
    codes, following = [], []
    for _ in range(times):
        answer = run.post("/invocations", slow_request(6), timeout=30)
        codes.append(
            (answer.status_code, answer.headers.get("content-type"), answer.json().get("error_code"))
        )
        after = run.post("/invocations", slow_request(0.1), timeout=60)
        following.append(after.status_code == 200 and after.json() == {"predictions": [0.1]})
    ok = all(c == (504, _JSON, "DEADLINE_EXCEEDED") for c in codes) and all(following)
    return Trial(
        "limits",
        f"{mode}: 6 s prediction, 2 s request timeout",
        times,
        f"{sum(c[0] == 504 for c in codes)} x JSON 504 `DEADLINE_EXCEEDED`; the stuck worker "
        f"replaced itself and the following request was served {sum(following)} of {times} times",
        ok,
    )


def _models(work: Path) -> Callable[[str], Path]:
    """``get(scenario)``: the fixture model, saved under ``work`` on first use."""
    from tests.fixtures import models

    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = models.save(name, work / "models" / name)
        return made[name]

    return get


def run(quick: bool = False) -> Section:
    """Try every limit in both modes; the limits section of docs/reliability.md."""
    times, per_kind, idle = (2, 25, 200) if quick else (10, 100, 1000)
    work = Path(tempfile.mkdtemp(prefix="kiln-limits-"))
    trials: list[Trial] = []
    try:
        models = _models(work)
        iris = models("sklearn_iris")
        modes = _Modes(work, models)
        with modes.stack:
            runs = {
                mode: modes.start("sklearn_iris", mode, KILN_MAX_BODY_SIZE=BODY_LIMIT, KILN_WORKERS="2")
                for mode in MODES
            }
            for mode, served in runs.items():
                trials += _bodies(served, mode, iris, times)
                trials += _heads(served, mode, iris, times)
            trials += _slowloris(runs, iris, per_kind)
            for mode, served in runs.items():
                trials.append(_idle(served, mode, iris, idle))
            for mode in MODES:
                slow = modes.start("slow_predict", mode, KILN_WORKERS="1", KILN_REQUEST_TIMEOUT="2")
                trials.append(_timeouts(slow, mode, max(1, times // 5)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes = (
        "Both modes serve `sklearn_iris` with 2 workers and `KILN_MAX_BODY_SIZE=64k`; the timeout rows "
        "serve `slow_predict` with 1 worker and `KILN_REQUEST_TIMEOUT=2`. Header limits: 8 KiB per line, "
        f"{client_limits.MAX_HEADER_BYTES // 1024} KiB in all; a request head must arrive within "
        f"{client_limits.HEADER_TIMEOUT} s and a body may not pause for {client_limits.BODY_TIMEOUT} s "
        "(nginx's `client_header_timeout`/`client_body_timeout`; the workers keep them without nginx)."
    )
    return Section("Limits", tuple(trials), notes)


if __name__ == "__main__":
    sys.exit(section_main(run))
