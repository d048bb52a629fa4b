"""Faults under load: the fault drills of tests/e2e/test_faults.py, run with longer load phases.

Each drill builds (or reuses) an image with kiln, runs it in Docker, drives it with a
load generator that classifies every request's fate (tests/e2e/counted_load.py), injects
the fault and checks what the docs promise. The rows are the drills' own measurements.
"""

from __future__ import annotations

from bench.reliability.pytest_trials import trials_from_tests
from bench.reliability.table import Section

TESTS = "tests/e2e/test_faults.py"
QUICK_SECONDS, FULL_SECONDS = 2, 10
"""Seconds of load before and after each fault (``KILN_RELIABILITY_SECONDS``)."""

NOTES = """
How to read it: every drill keeps 4 clients (2 in the out-of-memory drill) sending the same
small request over keep-alive connections to the container's own address, and counts what
each request got: an HTTP status, `refused` (the connection could not be opened: nothing was
accepted), `closed` (the connection was closed before any byte of an answer: the request was
not accepted; at most one per client, at the moment nginx stops listening), `truncated` or
`timeout` (none seen).

- **A killed worker** costs the requests that were inside it: nginx answers them with a JSON
  502 (`INTERNAL_ERROR`); the other worker keeps serving, and the supervisor starts a
  replacement at once (`worker N died (signal SIGKILL); starting a new one`).
- **SIGTERM** (`docker stop`): nginx stops accepting, finishes every request it accepted (the
  two slow ones included), then the workers stop; the container exits 0 well inside the 30 s.
- **`docker restart`**: the same drain, then a fresh start; until a worker has loaded the
  model nginx answers a fast JSON 503, never a hang.
- **Out of memory**: kiln *recovers*. The kernel kills the worker that allocated (the one with
  the most memory); the supervisor sees the cgroup's `oom_kill` count rise and logs `worker N
  was killed by SIGKILL, likely out of memory (container memory limit 400 MiB; ...)`, then
  starts a new worker. The request that caused it gets a JSON 502. A container that keeps
  running out (5 worker deaths within 60 s) stops with exit status 1, so that the orchestrator
  sees a crash instead of a container that restarts workers forever.
- **A model that fails to load** never answers `/ping` with 200 (nginx says 503 while the
  worker loads); the container exits 1 with the model's own error in its log.
"""


def run(quick: bool = False) -> Section:
    seconds = QUICK_SECONDS if quick else FULL_SECONDS
    trials = trials_from_tests([TESTS], env={"KILN_RELIABILITY_SECONDS": str(seconds)})
    notes = f"Load phases of {seconds} s before and after each fault.\n" + NOTES
    return Section("Faults under load", tuple(trials), notes)
