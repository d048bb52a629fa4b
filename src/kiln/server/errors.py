"""JSON error answers of the scoring app: ``{"error_code": ..., "message": ...}``.

Status codes and error codes (codes come from MLflow's own ``ErrorCode`` enum, so a
client that maps them keeps working):

=====  ===========================  ==================================================
400    ``BAD_REQUEST``              malformed body, wrong JSON shape, bad CSV/parquet,
                                    and an exception raised inside the model's predict
400    ``INVALID_PARAMETER_VALUE``  schema enforcement failed (missing column, wrong
                                    type) or a param has the wrong type
404    ``ENDPOINT_NOT_FOUND``       unknown path (or ``/metrics`` when metrics are off)
405    ``BAD_REQUEST``              wrong method for a known path
413    ``REQUEST_LIMIT_EXCEEDED``   body larger than ``max_body_size``
415    ``BAD_REQUEST``              missing or unsupported Content-Type
500    ``INTERNAL_ERROR``           kiln itself failed (e.g. an unserialisable result)
503    ``TEMPORARILY_UNAVAILABLE``  the worker's queue is full (``max_queue``), or the
                                    model is still loading; with ``Retry-After``
504    ``DEADLINE_EXCEEDED``        parse + predict did not finish within ``request_timeout``
=====  ===========================  ==================================================

Every body also carries the ``error_class`` and ``sqlstate`` that MLflow 3 gives an
``MlflowException`` with the same code (``ERROR_CLASSES``; none for the codes MLflow
leaves unclassified), or the ones the MLflow exception itself carried (e.g. schema
enforcement: ``SCHEMA_ENFORCEMENT_FAILED``, ``KAM01``).

No web framework here: the supervisor renders nginx's own error pages from these bodies
(``kiln.runtime.nginx_errors``) and need not load Starlette, anyio and their imports for that;
``kiln.server.responses`` makes Starlette responses of them.

Stack traces go to the log; they are added to the body (``stack_trace``) only when
the operator sets ``KILN_EXPOSE_TRACEBACKS=true``.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import orjson

from kiln.errors import ScoringError
from kiln.server import wording

logger = logging.getLogger(__name__)

BAD_REQUEST = "BAD_REQUEST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
INTERNAL_ERROR = "INTERNAL_ERROR"
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"

JSON_MEDIA_TYPE = "application/json"

ERROR_CLASSES: dict[str, tuple[str, str]] = {
    "BAD_REQUEST": ("INVALID_PARAMETER_VALUE", "KAM00"),
    "CUSTOMER_UNAUTHORIZED": ("PERMISSION_DENIED", "KAM00"),
    "ENDPOINT_NOT_FOUND": ("RESOURCE_NOT_FOUND", "KAM00"),
    "FEATURE_DISABLED": ("FEATURE_DISABLED", "KAM00"),
    "INTERNAL_ERROR": ("CLIENT_INTERNAL_ERROR", "XXM00"),
    "INVALID_PARAMETER_VALUE": ("INVALID_PARAMETER_VALUE", "KAM00"),
    "INVALID_STATE": ("CLIENT_INTERNAL_ERROR", "XXM00"),
    "NOT_FOUND": ("RESOURCE_NOT_FOUND", "KAM00"),
    "PERMISSION_DENIED": ("PERMISSION_DENIED", "KAM00"),
    "RESOURCE_ALREADY_EXISTS": ("RESOURCE_ALREADY_EXISTS", "KAM00"),
    "RESOURCE_DOES_NOT_EXIST": ("RESOURCE_NOT_FOUND", "KAM00"),
    "TEMPORARILY_UNAVAILABLE": ("CLIENT_INTERNAL_ERROR", "XXM00"),
}
"""error_code -> (error_class, sqlstate): what ``MlflowException(message, error_code)`` derives
in MLflow 3.17 (``mlflow.error_classification``, the client-side tables). Copied rather than
imported: the model's environment may hold an MLflow without that module, and the answers
should not depend on it."""


class ScoringFailure(ScoringError):
    """A ScoringError that may carry a stack trace and MLflow's extra error fields."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        error_code: str = BAD_REQUEST,
        stack_trace: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, status=status, error_code=error_code)
        self.stack_trace = stack_trace
        self.extra = extra or {}


MAX_MESSAGE_CHARS = 4096
"""Error messages can quote the input (MLflow's schema errors do); a client gets at most this much."""


def error_body(error_code: str, message: str, *, stack_trace: str | None = None, **extra: Any) -> bytes:
    """The JSON bytes of an error answer; the message is cut to MAX_MESSAGE_CHARS."""
    if len(message) > MAX_MESSAGE_CHARS:
        cut = len(message) - MAX_MESSAGE_CHARS
        message = f"{message[:MAX_MESSAGE_CHARS]}... ({cut} more characters cut)"
    body: dict[str, Any] = {"error_code": error_code, "message": message}
    classified = ERROR_CLASSES.get(error_code)
    if classified is not None:
        body["sqlstate"] = classified[1]
        body["error_class"] = classified[0]
    body.update(extra)
    if stack_trace is not None:
        body["stack_trace"] = stack_trace
    return orjson.dumps(body, default=str)


def from_exception(exc: BaseException, *, expose_tracebacks: bool) -> tuple[int, bytes]:
    """Status and JSON body for any exception raised while scoring a request.

    ScoringError keeps its own status and code; an ``MlflowException`` keeps its
    ``error_code`` and MLflow's HTTP mapping (400 for ``BAD_REQUEST`` and
    ``INVALID_PARAMETER_VALUE``); anything else is an error inside the model and
    answers 400 ``BAD_REQUEST`` like MLflow does.
    """
    if isinstance(exc, ScoringFailure):
        trace = exc.stack_trace
        status, code, message, extra = exc.status, exc.error_code, exc.message, exc.extra
    elif isinstance(exc, ScoringError):
        trace = None
        status, code, message, extra = exc.status, exc.error_code, exc.message, {}
    else:
        mlflow_fields = _mlflow_exception_fields(exc)
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if mlflow_fields is not None:
            status, code, message, extra = mlflow_fields
        else:
            status, code, extra = 400, BAD_REQUEST, {}
            message = f"{wording.PREDICT_FAILED} Error: {type(exc).__name__}: {exc}"
    if trace:
        logger.warning("request failed with %d %s: %s\n%s", status, code, message, trace)
    body = error_body(code, message, stack_trace=trace if expose_tracebacks else None, **extra)
    return status, body


def failure_from_mlflow(exc: BaseException, *, prefix: str = "", with_trace: bool = False) -> ScoringFailure:
    """A ScoringFailure with the status, code and message of an ``MlflowException`` (or BAD_REQUEST)."""
    fields = _mlflow_exception_fields(exc)
    if fields is None:
        fields = (400, BAD_REQUEST, f"{type(exc).__name__}: {exc}", {})
    status, code, message, extra = fields
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if with_trace else None
    return ScoringFailure(prefix + message, status=status, error_code=code, stack_trace=trace, extra=extra)


def _mlflow_exception_fields(exc: BaseException) -> tuple[int, str, str, dict[str, Any]] | None:
    """(status, error_code, message, extra fields) of an MlflowException, or None for other errors."""
    get_status = getattr(exc, "get_http_status_code", None)
    code = getattr(exc, "error_code", None)
    message = getattr(exc, "message", None)
    if get_status is None or not isinstance(code, str) or not isinstance(message, str):
        return None
    extra: dict[str, Any] = {}
    for name in ("sqlstate", "error_class"):
        value = getattr(exc, name, None)
        if isinstance(value, str):
            extra[name] = value
    status = get_status()
    return (status if isinstance(status, int) else 500), code, message, extra
