"""The small endpoints (``/ping``, ``/health``, ``/version``, ``/metrics``) and JSON 404/405/500."""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from kiln.server.errors import (
    BAD_REQUEST,
    ENDPOINT_NOT_FOUND,
    INTERNAL_ERROR,
    JSON_MEDIA_TYPE,
)
from kiln.server.responses import error_response
from kiln.server.state import ServerState
from kiln.version import __version__

logger = logging.getLogger(__name__)

KILN_VERSION_HEADER = "X-Kiln-Version"
_PING_BODY = b"\n"


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
        headers={KILN_VERSION_HEADER: __version__},
    )


async def metrics(request: Request) -> Response:
    collector = _state(request).metrics
    if collector is None:
        return error_response(
            404, ENDPOINT_NOT_FOUND, "metrics are turned off (KILN_METRICS=false); no route for /metrics"
        )
    body, content_type = collector.exposition()
    return Response(body, 200, headers={"Content-Type": content_type})


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404 and 405 as JSON errors (under ``/v2``: the protocol's ``{"error": ...}``)."""
    assert isinstance(exc, HTTPException)
    if request.url.path == "/v2" or request.url.path.startswith("/v2/"):
        return _v2_error(request, exc)
    if exc.status_code == 404:
        return error_response(
            404,
            ENDPOINT_NOT_FOUND,
            f"no endpoint at {request.url.path!r}; the scoring server serves "
            "/ping, /health, /version, /invocations, /metrics and /v2",
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


def _v2_error(request: Request, exc: HTTPException) -> Response:
    path = request.url.path
    if exc.status_code == 404:
        off = _state(request).settings.v2 is False
        message = (
            f"no endpoint at {path!r}: the V2 endpoints are turned off (KILN_V2=false)"
            if off
            else f"no endpoint at {path!r}; the V2 endpoints are /v2, /v2/health/live, "
            "/v2/health/ready and /v2/models/{name}[/versions/{version}][/ready|/infer]"
        )
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method {request.method} is not allowed on {path!r} (allowed: {allowed})"
    else:
        message = str(exc.detail)
    return Response(
        orjson.dumps({"error": message}), exc.status_code, headers=exc.headers, media_type=JSON_MEDIA_TYPE
    )


async def server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error answering %s %s", request.method, request.url.path)
    return error_response(500, INTERNAL_ERROR, f"internal error in the scoring server: {type(exc).__name__}")
