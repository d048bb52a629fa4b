"""``GET /metrics``: Prometheus counters of the scoring app, summed over all worker processes.

Several uvicorn worker processes serve behind one socket, so the metrics use
prometheus_client's multiprocess mode: the supervisor calls ``prepare_metrics_dir``
once (it wipes ``<runtime_dir>/metrics``) and starts every worker with the variables
it returns, and calls ``mark_worker_dead(pid)`` when a worker exits. Without
``PROMETHEUS_MULTIPROC_DIR`` (one process, e.g. tests) each app keeps its own registry.

Metrics: ``kiln_requests_total{method,path,status}``,
``kiln_request_duration_seconds{path}`` (histogram), ``kiln_requests_in_flight`` and
``kiln_predict_timeouts_total{state}`` (``queued``: dropped before it ran; ``running``:
the worker is being replaced); with micro-batching on, ``kiln_batch_size`` (requests per
batch sent to the predict lane) and ``kiln_batch_wait_seconds`` (a request's wait for its batch). The V2
paths are counted by their template, with the model's name and version as ``{name}`` and
``{version}`` (``/v2/models/{name}/infer``); other paths than the app's own as ``other``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_SUBDIR = "metrics"
KNOWN_PATHS = frozenset({"/ping", "/health", "/version", "/invocations", "/metrics"})
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

_prepared_dir: list[str] = []


def prepare_metrics_dir(runtime_dir: str) -> dict[str, str]:
    """Wipe and create ``<runtime_dir>/metrics``; the environment variables to give every worker."""
    path = os.path.join(runtime_dir, METRICS_SUBDIR)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    _prepared_dir[:] = [path]
    return {MULTIPROC_ENV: path}


def mark_worker_dead(pid: int, metrics_dir: str | None = None) -> None:
    """Forget the live gauges (in-flight requests) of a worker process that has exited."""
    path = metrics_dir or (_prepared_dir[0] if _prepared_dir else os.environ.get(MULTIPROC_ENV))
    if not path or not os.path.isdir(path):
        return
    multiprocess: Any = importlib.import_module("prometheus_client.multiprocess")
    multiprocess.mark_process_dead(pid, path)


class Metrics:
    """The app's metric objects and their exposition."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self._registry = None if self.multiprocess else CollectorRegistry()
        registry: Any = self._registry
        self.requests = Counter(
            "kiln_requests", "HTTP requests answered", ("method", "path", "status"), registry=registry
        )
        self.duration = Histogram(
            "kiln_request_duration_seconds",
            "Time from request to the end of the answer",
            ("path",),
            buckets=BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "kiln_requests_in_flight",
            "Requests being handled",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.timeouts = Counter(
            "kiln_predict_timeouts",
            "Requests answered 504 because parse+predict overran the request timeout",
            ("state",),
            registry=registry,
        )
        self.batch_size = Histogram(
            "kiln_batch_size",
            "Requests per batch sent to the predict lane (combinable ones share a predict call)",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_wait = Histogram(
            "kiln_batch_wait_seconds",
            "Time a request waited for its batch to leave for the predict lane",
            buckets=BATCH_WAIT_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[str, Any] = {}

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        key = (method, path, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(method, path, str(status))
        child.inc()
        histogram = self._durations.get(path)
        if histogram is None:
            histogram = self._durations[path] = self.duration.labels(path)
        histogram.observe(seconds)

    def batch(self, size: int, waits: list[float]) -> None:
        """A batch of ``size`` requests left for the lane; ``waits``: how long each waited for it."""
        self.batch_size.observe(size)
        for wait in waits:
            self.batch_wait.observe(wait)

    def predict_timeout(self, started: bool) -> None:
        self.timeouts.labels("running" if started else "queued").inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            multiprocess: Any = importlib.import_module("prometheus_client.multiprocess")
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self._registry is not None
        return generate_latest(self._registry), CONTENT_TYPE_LATEST


V2_PATHS = frozenset({"/v2", "/v2/health/live", "/v2/health/ready"})
V2_MODEL_ENDINGS = ("", "/ready", "/infer")


def metric_path(path: str) -> str:
    """The ``path`` label of a request: the path, a V2 template, or ``other``."""
    if path in KNOWN_PATHS or path in V2_PATHS:
        return path
    if not path.startswith("/v2/models/"):
        return "other"
    parts = path[len("/v2/models/") :].split("/")
    template = "/v2/models/{name}"
    if len(parts) >= 3 and parts[1] == "versions":
        template += "/versions/{version}"
        parts = parts[2:]
    ending = "/" + "/".join(parts[1:]) if len(parts) > 1 else ""
    return template + ending if ending in V2_MODEL_ENDINGS and parts[0] else "other"


class MetricsMiddleware:
    """Counts every HTTP request by method, path and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        path = metric_path(scope["path"])

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe(scope["method"], path, status, time.perf_counter() - started)
