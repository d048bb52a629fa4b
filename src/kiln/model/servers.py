"""The tracking server and registry a model URI is resolved against, set up in MLflow for one call.

MLflow reads the tracking and registry URIs from process-wide state in several places
(``models:/`` and logged-model lookups ignore the ``tracking_uri`` argument of
``download_artifacts``), so :func:`use_servers` sets that state for the duration of a
resolution and restores it afterwards. It is not thread-safe, like MLflow's own setters.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import ModelURIError
from kiln.model.uri import strip_credentials

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
REGISTRY_URI_ENV = "MLFLOW_REGISTRY_URI"
_PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_SAVED_ENV = (TRACKING_URI_ENV, REGISTRY_URI_ENV, _PROGRESS_BAR_ENV)

FAST_FAILURE_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
"""For lookups: MLflow's defaults (7 retries, 120 s timeout) keep retrying an unreachable
server for minutes. Values the user set in the environment win."""

_REMOTE_SCHEMES = ("http", "https", "databricks", "databricks-uc", "uc")


@dataclass(frozen=True)
class Servers:
    """The effective tracking and registry URIs; they may hold credentials, so never show them."""

    tracking_uri: str
    registry_uri: str

    @property
    def tracking(self) -> str:
        """``tracking server http://host:5000`` (credentials removed), for messages."""
        return _describe("tracking server", "tracking store", self.tracking_uri)

    @property
    def registry(self) -> str:
        """``model registry at http://host:5000`` (credentials removed), for messages."""
        if self.registry_uri == self.tracking_uri:
            return f"the model registry of {self.tracking}"
        return _describe("model registry at", "model registry at", self.registry_uri)


def _describe(remote: str, local: str, uri: str) -> str:
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    return f"{remote if scheme in _REMOTE_SCHEMES else local} {strip_credentials(uri)}"


@contextmanager
def use_servers(
    tracking_uri: str | None, registry_uri: str | None, *, model_uri: str, needs_tracking: bool
) -> Iterator[Servers]:
    """Point MLflow at these servers (None: MLflow's own choice from the environment) meanwhile.

    ``needs_tracking``: the URI is looked up on a tracking server (``runs:/``, ``models:/``,
    ``mlflow-artifacts:/``), so one must be configured or MLflow's local default must exist.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    saved_env = {name: os.environ.get(name) for name in _SAVED_ENV}
    saved_tracking = getattr(tracking_state, "_tracking_uri", None)
    saved_registry = getattr(registry_state, "_registry_uri", None)
    try:
        explicit = tracking_uri or saved_tracking or os.environ.get(TRACKING_URI_ENV)
        if needs_tracking and not explicit:
            _require_default_store(mlflow.get_tracking_uri(), model_uri)
        mlflow.set_tracking_uri(tracking_uri or mlflow.get_tracking_uri())
        if registry_uri:
            mlflow.set_registry_uri(registry_uri)
        # kiln shows its own progress (tqdm bars would also print when stderr is not a terminal).
        os.environ[_PROGRESS_BAR_ENV] = "false"
        yield Servers(tracking_uri=mlflow.get_tracking_uri(), registry_uri=mlflow.get_registry_uri())
    finally:
        mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]  # None restores "unset"
        mlflow.set_registry_uri(saved_registry)  # type: ignore[arg-type]  # None restores "unset"
        _restore_env(saved_env)


@contextmanager
def fail_fast() -> Iterator[None]:
    """Make MLflow's HTTP calls give up on an unreachable server in seconds, meanwhile.

    urllib3's "Retrying ..." warnings are held back: the error kiln reports says it all.
    """
    added = {name: value for name, value in FAST_FAILURE_ENV.items() if name not in os.environ}
    retries_log = logging.getLogger("urllib3.connectionpool")
    saved_level = retries_log.level
    os.environ.update(added)
    retries_log.setLevel(max(saved_level, logging.ERROR))
    try:
        yield
    finally:
        retries_log.setLevel(saved_level)
        for name in added:
            os.environ.pop(name, None)


def _restore_env(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _require_default_store(default_uri: str, model_uri: str) -> None:
    """Nothing configured: MLflow would create an empty ``mlflow.db`` here and find nothing in it."""
    parsed = urllib.parse.urlparse(default_uri)
    if parsed.scheme == "sqlite" and not Path(urllib.parse.unquote(parsed.path[1:])).exists():
        raise ModelURIError(
            f"model URI {strip_credentials(model_uri)!r} needs an MLflow tracking server, but none is "
            f"configured (and MLflow's default local store {default_uri} does not exist)",
            hint="pass --tracking-uri http://HOST:PORT or set MLFLOW_TRACKING_URI",
        )
