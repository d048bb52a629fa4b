"""The answers nginx gives itself, in the app's error shapes: one body per page and protocol.

nginx answers a few errors without a worker: a body over the limit (413), a request head
it cannot parse or that is too large (400, 414, 431), no worker listening (503 while the
model loads or the workers restart), a worker that closed the connection without an answer
(502), no answer within its proxy timeout (504). Each page carries the body the app gives
for the same error code -- ``kiln.server.errors.error_body``: ``error_code``, ``message``,
and MLflow 3's ``error_class`` and ``sqlstate`` where MLflow classifies the code -- and for a
request under ``/v2`` the Open Inference Protocol's ``{"error": message}``
(``kiln.server.v2.errors.error_json``). The template defines one variable per page that
picks the body by the request's URI (``$kiln_v2``).
"""

from __future__ import annotations

from dataclasses import dataclass

from kiln.server import wording
from kiln.server.errors import (
    BAD_REQUEST,
    DEADLINE_EXCEEDED,
    ENDPOINT_NOT_FOUND,
    INTERNAL_ERROR,
    REQUEST_LIMIT_EXCEEDED,
    TEMPORARILY_UNAVAILABLE,
    error_body,
)
from kiln.server.v2.errors import error_json

NO_WORKER = "no worker is ready yet: the model is loading or the workers are restarting"


@dataclass(frozen=True)
class ErrorPage:
    """One error nginx answers: ``$kiln_error_<name>`` holds its body, quoted for nginx.conf."""

    name: str
    mlflow: str
    """The app's JSON error body (``/invocations``, ``/ping`` and the rest)."""
    v2: str
    """The Open Inference Protocol's ``{"error": ...}`` (paths under ``/v2``)."""


def error_pages(*, max_body_size: int, proxy_timeout: int) -> tuple[ErrorPage, ...]:
    """Every page the template uses, its messages filled in with these limits."""
    return (
        _page(
            "bad_request",
            BAD_REQUEST,
            "malformed HTTP request (request line, headers or body framing); nginx refused it",
        ),
        _page("not_found", ENDPOINT_NOT_FOUND, "no endpoint at this path"),
        _page("not_allowed", BAD_REQUEST, "this method is not allowed"),
        _page("uri_too_long", REQUEST_LIMIT_EXCEEDED, "the request line is too long"),
        _page(
            "header_too_large",
            REQUEST_LIMIT_EXCEEDED,
            "a request header, or all of them together, is too large",
        ),
        _page(
            "http_version",
            BAD_REQUEST,
            "unsupported HTTP version or Transfer-Encoding; send HTTP/1.1 with Content-Length or chunked",
        ),
        _page(
            "too_large",
            REQUEST_LIMIT_EXCEEDED,
            f"request body is larger than the limit of {max_body_size} bytes (KILN_MAX_BODY_SIZE)",
        ),
        _page(
            "bad_gateway",
            INTERNAL_ERROR,
            "the worker handling this request closed the connection without an answer (see the server log)",
        ),
        _page("unavailable", TEMPORARILY_UNAVAILABLE, NO_WORKER),
        _page(
            "timeout",
            DEADLINE_EXCEEDED,
            f"{wording.TIMEOUT}: no answer from the worker within {proxy_timeout} s (nginx proxy timeout)",
        ),
    )


def _page(name: str, error_code: str, message: str) -> ErrorPage:
    return ErrorPage(
        name=name,
        mlflow=nginx_string(error_body(error_code, message) + b"\n"),
        v2=nginx_string(error_json(message) + b"\n"),
    )


def nginx_string(text: bytes) -> str:
    """``text`` as a single-quoted nginx.conf string: nginx unescapes ``\\\\``, ``\\'`` and ``\\n``.

    nginx has no escape for ``$`` (it would start a variable), so a body must not contain one.
    """
    decoded = text.decode("utf-8")
    if "$" in decoded:
        raise ValueError(f"an nginx error page cannot contain '$': {decoded!r}")
    escaped = decoded.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"
