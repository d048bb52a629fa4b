"""Overload: req/s, latency and errors at 1x, 4x and 16x the saturation concurrency, queue limit on and off.

The model is the ``slow_predict`` fixture asked for PREDICT_SECONDS per request (a sleep: a
fixed, measurable cost that releases the GIL like numpy-heavy predictions, and that a busy
2-core machine does not blur). Two ``kiln serve`` instances (nginx in front of WORKERS uvicorn
workers) run side by side: one with a queue limit of LIMIT per worker, one with ``--max-queue 0``.

1. The saturation concurrency: wrk against the unlimited server at rising connection
   counts; the first count whose requests/s reach 90 % of the best seen.
2. At 1x, 4x and 16x that count, wrk against each server in turn (alternating which goes
   first), repeated; the medians go into the table.

wrk is a closed loop: a client refused with 503 asks again at once, without honouring
``Retry-After``, the worst case for the refusal path.

    .venv/bin/python -m bench.reliability.overload            # about 4 minutes
    .venv/bin/python -m bench.reliability.overload --quick    # about 1 minute
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import servers, wrk
from bench.reliability.table import Section, Trial, section_main
from kiln import contract

WORKERS = 2
LIMIT = 8
"""Queue places per worker: 2 x 8 = 16, below 16x saturation, so the limit bites where it should."""
PREDICT_SECONDS = 0.02
FACTORS = (1, 4, 16)
BODY = json.dumps({"dataframe_records": [{"seconds": PREDICT_SECONDS}]})
STATUS_TAG = "WRK_STATUS "

# Counts every answer by status (per wrk thread, summed in done()); the WRK_RESULT line is bench.wrk's.
_STATUS_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
statuses = {}
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
local report = done
done = function(summary, latency, requests)
  report(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do total[code] = (total[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(total) do table.insert(parts, string.format('"%d": %d', code, n)) end
  io.write("WRK_STATUS {" .. table.concat(parts, ", ") .. "}\\n")
end
"""


@dataclass(frozen=True)
class Load:
    """One wrk run: connections, duration and what came back."""

    connections: int
    result: wrk.WrkResult
    statuses: dict[int, int]

    @property
    def ok_rps(self) -> float:
        return self.statuses.get(200, 0) / self.result.seconds

    @property
    def refused_rps(self) -> float:
        return self.statuses.get(503, 0) / self.result.seconds

    @property
    def other_errors(self) -> int:
        """Answers other than 200 and 503, plus connection errors and timeouts."""
        other = sum(n for code, n in self.statuses.items() if code not in (200, 503))
        return other + self.result.socket_errors


def _script(work: Path) -> Path:
    path = work / "overload.lua"
    path.write_text(wrk.lua_script(BODY) + _STATUS_LUA)
    return path


def _wrk(url: str, script: Path, connections: int, seconds: float) -> Load:
    threads = min(2, connections)
    cmd = ["wrk", f"--threads={threads}", f"--connections={connections}", f"--duration={round(seconds)}s"]
    cmd += ["--timeout=10s", f"--script={script}", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr or done.stdout}")
    line = next((x for x in done.stdout.splitlines() if x.startswith(STATUS_TAG)), None)
    if line is None:
        raise RuntimeError(f"no {STATUS_TAG.strip()} line in wrk output:\n{done.stdout}")
    statuses = {int(code): n for code, n in json.loads(line[len(STATUS_TAG) :]).items()}
    return Load(connections, wrk.parse(done.stdout), statuses)


@contextmanager
def _kiln(model: Path, max_queue: int, log_dir: Path) -> Iterator[servers.Server]:
    port = servers.free_port()
    cmd = [sys.executable, "-m", "kiln", "serve", "-m", str(model), "--port", str(port)]
    cmd += ["--workers", str(WORKERS), "--max-queue", str(max_queue)]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "KILN_LOG_LEVEL": "warning"}
    server = servers.start_process(f"max-queue={max_queue}", cmd, port, log_dir / f"q{max_queue}.log", env)
    try:
        servers.wait_ready(server)
        yield server
    finally:
        servers.stop(server)


def saturation(url: str, script: Path, levels: Sequence[int], seconds: float) -> tuple[int, list[Load]]:
    """The first connection count whose requests/s reach 90 % of the best of ``levels``."""
    loads = [_wrk(url, script, c, seconds) for c in levels]
    best = max(load.ok_rps for load in loads)
    return next(load.connections for load in loads if load.ok_rps >= 0.9 * best), loads


def _median_load(loads: list[Load]) -> dict[str, float]:
    return {
        "ok_rps": statistics.median(x.ok_rps for x in loads),
        "refused_rps": statistics.median(x.refused_rps for x in loads),
        "other_errors": statistics.median(x.other_errors for x in loads),
        "p50": statistics.median(x.result.p50_ms for x in loads),
        "p99": statistics.median(x.result.p99_ms for x in loads),
        "requests": sum(x.result.requests for x in loads),
    }


def _table(rows: list[tuple[int, int, str, dict[str, float]]]) -> str:
    lines = [
        "| Load | Connections | Queue limit | OK req/s | 503 req/s | Other errors | p50 ms | p99 ms |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for factor, connections, limit, m in rows:
        lines.append(
            f"| {factor}x | {connections} | {limit} | {m['ok_rps']:.0f} | {m['refused_rps']:.0f} | "
            f"{m['other_errors']:.0f} | {m['p50']:.1f} | {m['p99']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def run(quick: bool = False) -> Section:
    """Measure, and return the overload section of docs/reliability.md."""
    seconds, repeats = (3.0, 1) if quick else (8.0, 3)
    levels = (1, 2, 4, 8) if quick else (1, 2, 3, 4, 6, 8, 12, 16)
    limit = LIMIT
    work = Path(tempfile.mkdtemp(prefix="kiln-overload-"))
    try:
        from tests.fixtures import models

        model = models.save("slow_predict", work / "slow_predict")
        script = _script(work)
        with ExitStack() as stack:
            limited = stack.enter_context(_kiln(model, limit, work))
            unlimited = stack.enter_context(_kiln(model, 0, work))
            for server in (limited, unlimited):  # warm up: connections, imports, caches
                _wrk(server.invocations, script, 4, 2)
            sat, curve = saturation(unlimited.invocations, script, levels, seconds)
            measured: dict[tuple[int, str], list[Load]] = {}
            for repeat in range(repeats):
                for i, factor in enumerate(FACTORS):
                    pair = [(f"{limit}/worker", limited), ("off", unlimited)]
                    for name, server in pair if (repeat + i) % 2 == 0 else pair[::-1]:
                        load = _wrk(server.invocations, script, factor * sat, seconds)
                        measured.setdefault((factor, name), []).append(load)
        rows = [(f, f * sat, name, _median_load(loads)) for (f, name), loads in sorted(measured.items())]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Section("Overload", tuple(_trials(rows, limit)), _notes(sat, curve, rows, seconds, repeats, limit))


def _trials(rows: list[tuple[int, int, str, dict[str, float]]], limit: int) -> list[Trial]:
    by = {(f, name): m for f, _, name, m in rows}
    trials = []
    for factor, connections, name, m in rows:
        outcome = (
            f"{m['ok_rps']:.0f} req/s served, {m['refused_rps']:.0f} req/s refused with 503, "
            f"{m['other_errors']:.0f} other errors; p99 {m['p99']:.0f} ms"
        )
        passed = m["other_errors"] == 0
        if factor == FACTORS[-1] and name != "off":  # the limit must bound the tail where it bites
            passed = passed and m["p99"] < by[(factor, "off")]["p99"]
        trials.append(
            Trial(
                area="overload",
                scenario=f"{factor}x saturation ({connections} connections), queue limit {name}",
                attempts=int(m["requests"]),
                outcome=outcome,
                passed=passed,
            )
        )
    return trials


def _notes(
    sat: int,
    curve: list[Load],
    rows: list[tuple[int, int, str, dict[str, float]]],
    seconds: float,
    repeats: int,
    limit: int,
) -> str:
    steps = ", ".join(f"{load.connections}: {load.ok_rps:.0f}" for load in curve)
    return (
        f"`slow_predict` at {PREDICT_SECONDS * 1000:.0f} ms a request, `kiln serve` with {WORKERS} workers "
        f"behind nginx; queue limit `--max-queue {limit}` per worker (the default, "
        f"{contract.DEFAULT_MAX_QUEUE}, leaves more places than 16x saturation) against `--max-queue 0`. "
        f"Saturation: {sat} connections (req/s by connections: {steps}). Each cell: the median of "
        f"{repeats} wrk run(s) of {seconds:.0f} s, the two servers alternating; wrk retries a 503 at "
        "once (no `Retry-After`), so the 503 rate is the worst case, not what polite clients cause.\n\n"
        + _table(rows)
    )


if __name__ == "__main__":
    sys.exit(section_main(run))
