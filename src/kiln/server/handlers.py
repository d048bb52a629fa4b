"""The endpoints: ``/ping``, ``/health``, ``/version``, ``/invocations``, ``/metrics``, and JSON 404/405."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

import kiln
from kiln.runtime.settings import RuntimeSettings
from kiln.server.content import MediaKind, media_kind
from kiln.server.errors import (
    BAD_REQUEST,
    DEADLINE_EXCEEDED,
    ENDPOINT_NOT_FOUND,
    INTERNAL_ERROR,
    JSON_MEDIA_TYPE,
    REQUEST_LIMIT_EXCEEDED,
    ScoringFailure,
    error_response,
    from_exception,
)
from kiln.server.metrics import Metrics
from kiln.server.parsing import parse_request
from kiln.server.predict import Predictor
from kiln.server.serialize import predictions_json
from kiln.server.timeout import PredictLane, PredictTimeout

logger = logging.getLogger(__name__)

KILN_VERSION_HEADER = "X-Kiln-Version"
_PING_BODY = b"\n"


@dataclass
class ServerState:
    """What the handlers need; ``predictor`` and ``lane`` are set once the model is loaded."""

    settings: RuntimeSettings
    metrics: Metrics | None
    mlflow_version: str = "unknown"
    predictor: Predictor | None = None
    lane: PredictLane | None = None

    def score(self, body: bytes, kind: MediaKind) -> tuple[int, bytes]:
        """Parse -> predict -> serialise one request (runs on the predict lane)."""
        predictor = self.predictor
        assert predictor is not None
        try:
            request = parse_request(body, kind, predictor.contract)
            prediction = predictor.predict(request.data, request.params)
            try:
                return 200, predictions_json(prediction, unwrapped=request.unwrapped)
            except TypeError as exc:
                raise ScoringFailure(
                    f"the model's prediction could not be serialised to JSON: {exc}",
                    status=500,
                    error_code=INTERNAL_ERROR,
                ) from exc
        except Exception as exc:
            return from_exception(exc, expose_tracebacks=self.settings.expose_tracebacks)


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.kiln
    return state


async def ping(request: Request) -> Response:
    """200 once the model is loaded (the app accepts connections only after that)."""
    if _state(request).predictor is None:
        return error_response(503, "TEMPORARILY_UNAVAILABLE", "the model is still loading")
    return Response(_PING_BODY, 200, media_type=JSON_MEDIA_TYPE)


async def version(request: Request) -> Response:
    """MLflow's version as text, like MLflow; kiln's version in a header."""
    return Response(
        _state(request).mlflow_version,
        200,
        media_type="text/plain",
        headers={KILN_VERSION_HEADER: kiln.__version__},
    )


async def invocations(request: Request) -> Response:
    state = _state(request)
    lane = state.lane
    if lane is None:
        return error_response(503, "TEMPORARILY_UNAVAILABLE", "the model is still loading")
    deadline = asyncio.get_running_loop().time() + lane.timeout
    try:
        kind = media_kind(request.headers.get("content-type"))
        body = await _read_body(request, state.settings.max_body_size)
    except ScoringFailure as exc:
        return error_response(exc.status, exc.error_code, exc.message)
    try:
        status, payload = await lane.run(lambda: state.score(body, kind), deadline=deadline)
    except PredictTimeout as exc:
        return error_response(504, DEADLINE_EXCEEDED, str(exc))
    return Response(payload, status, media_type=JSON_MEDIA_TYPE)


async def metrics(request: Request) -> Response:
    collector = _state(request).metrics
    if collector is None:
        return error_response(
            404, ENDPOINT_NOT_FOUND, "metrics are turned off (KILN_METRICS=false); no route for /metrics"
        )
    body, content_type = collector.exposition()
    return Response(body, 200, headers={"Content-Type": content_type})


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404 and 405 as JSON errors."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(
            404,
            ENDPOINT_NOT_FOUND,
            f"no endpoint at {request.url.path!r}; the scoring server serves "
            "/ping, /health, /version, /invocations and /metrics",
        )
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return error_response(
            405,
            BAD_REQUEST,
            f"method {request.method} is not allowed on {request.url.path!r} (allowed: {allowed})",
            headers=exc.headers,
        )
    return error_response(exc.status_code, BAD_REQUEST, str(exc.detail), headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error answering %s %s", request.method, request.url.path)
    return error_response(500, INTERNAL_ERROR, f"internal error in the scoring server: {type(exc).__name__}")


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(int(length), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> ScoringFailure:
    return ScoringFailure(
        f"the request body ({size} bytes or more) is larger than the limit of {limit} bytes "
        "(KILN_MAX_BODY_SIZE)",
        status=413,
        error_code=REQUEST_LIMIT_EXCEEDED,
    )
