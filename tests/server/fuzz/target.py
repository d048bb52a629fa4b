"""The server under fuzzing: ``python -m kiln.runtime serve`` on a free port, and its health checks.

``fuzz_target(model, nginx=...)`` starts the real runtime (the supervisor, nginx unless
``nginx=False``, uvicorn workers) for a fixture model. ``FuzzTarget.snapshot()`` records
the process tree; ``FuzzTarget.check(before)`` reports what changed (a worker that died
and was replaced, nginx restarted, the supervisor gone) and whether a correct request
still gets the model's own prediction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.runtime.running import (
    Running,
    free_port,
    remove_dir,
    running,
    runtime_command,
    runtime_env,
    short_tmp_dir,
)
from tests.server.cases import IRIS_COLUMNS, IRIS_ROWS, iris_frame

BODY_LIMIT = "64k"
"""Large enough for a 10 000-level nested JSON body to reach the parser; larger bodies get 413."""


@dataclass(frozen=True)
class Probe:
    """A correct request and the answer the model's own ``predict`` gives for it."""

    body: bytes
    expected: Any


def iris_probe(model: Path) -> Probe:
    """The sklearn_iris probe; the expectation comes from ``mlflow.pyfunc`` in this process."""
    import mlflow.pyfunc

    predictions = mlflow.pyfunc.load_model(str(model)).predict(iris_frame())
    body = json.dumps({"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}).encode()
    return Probe(body, {"predictions": json.loads(json.dumps(predictions.tolist()))})


@dataclass(frozen=True)
class Snapshot:
    supervisor_alive: bool
    workers: tuple[int, ...]
    nginx_master: int | None


@dataclass(frozen=True)
class Health:
    """What was wrong afterwards; ``crashed``: processes that died (workers, nginx, the supervisor)."""

    problems: list[str]
    crashed: int


@dataclass
class FuzzTarget:
    run: Running
    nginx: bool
    probe: Probe

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.run.port

    @property
    def url(self) -> str:
        return self.run.url

    def snapshot(self) -> Snapshot:
        alive = self.run.process.poll() is None
        workers = tuple(sorted(self.run.workers())) if alive else ()
        return Snapshot(alive, workers, self.run.nginx_master() if alive else None)

    def check(self, before: Snapshot) -> Health:
        """Everything that is not as it was before, and a wrong answer to the probe."""
        after = self.snapshot()
        found = []
        crashed = len(set(before.workers) - set(after.workers))
        if not after.supervisor_alive:
            found.append(f"the supervisor exited with {self.run.process.returncode}")
            crashed += 1
        if after.workers != before.workers:
            found.append(f"worker processes changed: {before.workers} -> {after.workers} (one died)")
        if after.nginx_master != before.nginx_master:
            found.append(f"nginx master changed: {before.nginx_master} -> {after.nginx_master}")
            crashed += 1
        found += self.probe_problems()
        return Health(found, crashed)

    def wait_ready(self) -> None:
        """Until ``/ping`` says 200; then the probe must get the model's own answer."""
        self.run.wait_ready()
        problems = self.probe_problems()
        if problems:
            raise AssertionError(f"the server answers wrongly before any fuzzing: {problems}")

    def probe_problems(self) -> list[str]:
        try:
            answer = httpx.post(
                self.url + "/invocations",
                content=self.probe.body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            return [f"the correct request failed: {exc!r}"]
        if answer.status_code != 200 or answer.json() != self.probe.expected:
            return [f"the correct request got {answer.status_code} {answer.text[:300]!r}"]
        return []


@contextmanager
def fuzz_target(
    model: Path,
    *,
    nginx: bool,
    log_dir: Path,
    probe: Probe,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> Iterator[FuzzTarget]:
    """The real runtime serving ``model``, ready (``wait=False``: still starting); stopped afterwards."""
    port = free_port()
    runtime_dir = short_tmp_dir("kiln-fz-")
    settings = {
        "KILN_WORKERS": str(workers),
        "KILN_MAX_BODY_SIZE": BODY_LIMIT,
        "KILN_DISABLE_NGINX": "false" if nginx else "true",
        "KILN_LOG_LEVEL": "error",
        **(env or {}),
    }
    try:
        env = runtime_env(model, port, runtime_dir, settings)
        with running(runtime_command("serve"), env, port, runtime_dir, log_dir) as run:
            target = FuzzTarget(run, nginx, probe)
            if wait:
                target.wait_ready()
            yield target
    finally:
        remove_dir(runtime_dir)
