"""Why a model URI could not be resolved: MLflow's and requests' exceptions as kiln messages.

Every message names the model URI and the server, never holds credentials, and never a
traceback (MLflow puts them into some messages when debug logging is on).
"""

from __future__ import annotations

import os
import re

from kiln.errors import ModelURIError
from kiln.model.uri import strip_credentials

_CREDENTIAL_ENV = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
_STATUS_CODES = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "ENDPOINT_NOT_FOUND": 404}
_NOT_FOUND = re.compile(
    r"RESOURCE_DOES_NOT_EXIST|\b404\b|No such artifact|NoSuchKey|does not exist|not found", re.I
)
_MAX_DETAIL = 300


def error_code(exc: BaseException) -> str | None:
    """MLflow's ``error_code`` (``RESOURCE_DOES_NOT_EXIST``, ...) of an MlflowException, else None."""
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, str) else None


def is_not_found(exc: BaseException) -> bool:
    """MLflow or the artifact store said the thing does not exist (not: there is no such API)."""
    if error_code(exc) == "ENDPOINT_NOT_FOUND":
        return False
    if error_code(exc) == "RESOURCE_DOES_NOT_EXIST" or http_status(exc) == 404:
        return True
    return error_code(exc) in (None, "INTERNAL_ERROR") and bool(_NOT_FOUND.search(detail(exc)))


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind an MLflow REST error or a ``requests.HTTPError``, if known."""
    code = error_code(exc)
    if code in _STATUS_CODES:
        return _STATUS_CODES[code]
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    match = re.search(r"error code (\d{3}) != 200|\b(\d{3}) (?:Client|Server) Error", detail(exc))
    return int(match.group(1) or match.group(2)) if match else None


def unreachable_reason(exc: BaseException) -> str | None:
    """``connection refused``, ``host name not found``, ... when no server answered at all."""
    import requests

    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if not any(isinstance(c, (requests.ConnectionError, requests.Timeout)) for c in chain):
        return None
    text = " ".join(str(c) for c in chain)
    for pattern, reason in (
        (r"Connection refused", "connection refused"),
        (r"Name or service not known|Failed to resolve|nodename nor servname", "host name not found"),
        (r"timed out|Timeout", "no answer in time"),
        (r"Connection reset|RemoteDisconnected|Connection aborted", "the connection was dropped"),
        (r"SSL|certificate", "TLS handshake failed"),
    ):
        if re.search(pattern, text):
            return reason
    return "no connection"


def detail(exc: BaseException) -> str:
    """The first meaningful lines of an exception's message: no tracebacks, no credentials."""
    text = getattr(exc, "message", None)
    if not isinstance(text, str):
        text = str(exc)
    kept = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith((" ", "\t", "#####", "Traceback"))
    ]
    short = " ".join(kept[:2]) or type(exc).__name__
    short = strip_credentials(short)
    return short if len(short) <= _MAX_DETAIL else short[: _MAX_DETAIL - 3] + "..."


def explain(exc: BaseException, *, subject: str, server: str) -> ModelURIError:
    """A ModelURIError for ``exc``; ``subject`` is e.g. ``model URI 'runs:/...'``."""
    reason = unreachable_reason(exc)
    if reason == "no answer in time":
        return ModelURIError(
            f"cannot reach {server} to resolve {subject}: {reason}",
            hint="check the tracking URI and the network; for a slow server raise "
            "MLFLOW_HTTP_REQUEST_TIMEOUT (seconds; kiln's lookups default to 10)",
        )
    if reason:
        return ModelURIError(
            f"cannot reach {server} to resolve {subject}: {reason}",
            hint="check the tracking URI (--tracking-uri or MLFLOW_TRACKING_URI) and that the server is up",
        )
    if isinstance(exc, ModuleNotFoundError):
        return ModelURIError(
            f"cannot download {subject}: MLflow needs the Python package {exc.name!r} for it",
            hint=f"install {exc.name} next to kiln (MLflow's artifact stores use it)",
        )
    status = http_status(exc)
    if status == 401:
        given = [name for name in _CREDENTIAL_ENV if os.environ.get(name)]
        what = f"refused the credentials from {', '.join(given)}" if given else "requires credentials"
        return ModelURIError(
            f"{server} {what} for {subject} (401 Unauthorized)",
            hint="set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN",
        )
    if status == 403:
        return ModelURIError(
            f"{server} denied access to {subject} (403 Forbidden: these credentials may not read it)",
            hint="ask for READ permission on the experiment or registered model, or use other credentials",
        )
    if error_code(exc) == "ENDPOINT_NOT_FOUND":
        return ModelURIError(
            f"{server} does not answer like an MLflow tracking server while resolving {subject} "
            f"({detail(exc)})",
            hint="the tracking URI should be the server's root URL, e.g. http://HOST:5000",
        )
    if "Could not find a registered artifact repository" in detail(exc):
        return ModelURIError(
            f"{subject} has a scheme MLflow cannot download from",
            hint="use a local path, file:, runs:/, models:/, mlflow-artifacts:/ or a cloud store URI "
            "(s3://, gs://, wasbs://, abfss://, hdfs://, dbfs:/, ...)",
        )
    if is_not_found(exc) and http_status(exc) == 404:
        return ModelURIError(f"{subject} not found on {server}: nothing is stored at that path (404)")
    if is_not_found(exc):
        return ModelURIError(f"{subject} not found on {server}: {detail(exc)}")
    return ModelURIError(f"cannot resolve {subject} on {server}: {detail(exc)}")
