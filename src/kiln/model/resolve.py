"""Model URIs -> a local model directory: ``resolve_model`` and the ``ResolvedModel`` it yields.

Local paths and ``file:`` URIs are used in place. Everything else (``runs:/``,
``models:/name/version``, ``models:/name@alias``, ``mlflow-artifacts:/``, cloud stores) is
looked up and downloaded with MLflow's own client into a temporary directory that is
removed when the ``with`` block ends, however it ends. Credentials stay in the process
environment: nothing returned here holds them.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kiln import contract
from kiln.errors import ModelError, ModelURIError
from kiln.model.failures import explain, is_not_found
from kiln.model.info import ModelInfo, read_model_info
from kiln.model.locate import TRACKING_SCHEMES, Location, locate, run_artifact_names, subject
from kiln.model.progress import download_progress
from kiln.model.servers import Servers, fail_fast, use_servers
from kiln.model.uri import local_model_path, scheme_of, strip_credentials

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedModel:
    """A model URI resolved to a local MLflow model directory, and where it came from.

    A downloaded ``path`` exists only inside the ``with resolve_model(...)`` block.
    """

    path: Path
    """The local model directory (the user's own for local paths, else a temporary download)."""
    uri: str
    """The URI as given, without credentials."""
    source: str
    """The storage location MLflow reports (an absolute path for local models)."""
    info: ModelInfo
    run_id: str | None = None
    model_name: str | None = None
    """The registered model's name, for ``models:/`` URIs."""
    model_version: str | None = None
    """The registered version; for ``models:/name@alias`` the version the alias pointed to."""
    tracking_uri: str | None = None
    """The tracking server used (``runs:/``, ``models:/``, ``mlflow-artifacts:/``), without credentials."""

    def labels(self) -> dict[str, str]:
        """Image labels recording what was resolved (``io.kiln.model.*``); unknown values left out."""
        values = {
            contract.LABEL_MODEL_URI: self.uri,
            contract.LABEL_MODEL_SOURCE: self.source,
            contract.LABEL_MODEL_RUN_ID: self.run_id,
            contract.LABEL_MODEL_NAME: self.model_name,
            contract.LABEL_MODEL_VERSION: self.model_version,
        }
        return {name: value for name, value in values.items() if value}


@contextmanager
def resolve_model(
    model_uri: str,
    *,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    progress: bool | None = None,
) -> Iterator[ResolvedModel]:
    """Resolve ``model_uri`` to a local model directory for the duration of the ``with`` block.

    ``tracking_uri``/``registry_uri``: None means MLflow's choice (``MLFLOW_TRACKING_URI``,
    ``MLFLOW_REGISTRY_URI``). ``progress``: show download progress (None: when stderr is a
    terminal). Raises ModelURIError naming the URI and the server when the URI cannot be
    resolved, and ModelError when what it names is not a servable MLflow model.
    """
    local = local_model_path(model_uri)
    if local is not None:
        yield _resolve_local(model_uri, local)
        return
    with _temporary_directory() as tmp:
        with use_servers(
            tracking_uri,
            registry_uri,
            model_uri=model_uri,
            needs_tracking=scheme_of(model_uri) in TRACKING_SCHEMES,
        ) as servers:
            with fail_fast():
                location = locate(model_uri, servers)
            path = _download(model_uri, location, servers, tmp, progress)
        yield _resolved(model_uri, location, servers, path)


def _resolve_local(model_uri: str, path: Path) -> ResolvedModel:
    if not path.exists():
        raise ModelURIError(
            f"model path {model_uri!r} does not exist",
            hint="pass an MLflow model directory or a URI such as runs:/<run_id>/<artifact_path>, "
            "models:/<name>/<version> or models:/<name>@<alias>",
        )
    info = read_model_info(path)
    return ResolvedModel(
        path=path, uri=strip_credentials(model_uri), source=str(path.resolve()), info=info, run_id=info.run_id
    )


def _download(model_uri: str, location: Location, servers: Servers, tmp: Path, progress: bool | None) -> Path:
    import mlflow.artifacts

    label = strip_credentials(model_uri)
    try:
        with download_progress(tmp, label=label, enabled=progress):
            local = mlflow.artifacts.download_artifacts(artifact_uri=location.download_uri, dst_path=str(tmp))
    except Exception as exc:
        if location.artifact_path is not None and is_not_found(exc):
            raise _not_in_run(model_uri, location, servers) from exc
        raise explain(exc, subject=subject(model_uri), server=location.server) from exc
    return Path(local)


def _not_in_run(model_uri: str, location: Location, servers: Servers) -> ModelURIError:
    """MLflow says "not found" for any failure inside a run's artifacts: tell the cases apart."""
    names = run_artifact_names(model_uri, servers)
    top = (location.artifact_path or "").split("/")[0]
    if top and top in names:
        return ModelURIError(
            f"cannot download {subject(model_uri)} from {servers.tracking}: run {location.run_id!r} "
            f"has an artifact {top!r}, but MLflow could not download {location.artifact_path!r}",
            hint="check the path inside the artifact; run with --debug to see MLflow's reason",
        )
    return ModelURIError(
        f"{subject(model_uri)} not found on {servers.tracking}: run {location.run_id!r} "
        f"has no artifact {location.artifact_path!r} (its artifacts: {', '.join(names) or 'none'})"
    )


def _resolved(model_uri: str, location: Location, servers: Servers, path: Path) -> ResolvedModel:
    where = f"{subject(model_uri)} (from {location.server})"
    if not path.is_dir() or not (path / "MLmodel").is_file():
        found = sorted(p.name for p in path.iterdir())[:10] if path.is_dir() else [path.name]
        raise ModelURIError(
            f"{where} is not an MLflow model: it has no MLmodel file "
            f"(it holds: {', '.join(found) or 'nothing'})",
            hint="point at the directory a model was logged to, e.g. runs:/<run_id>/model",
        )
    try:
        info = read_model_info(path)
    except ModelError as exc:  # its message names the temporary directory: name the URI instead
        message = exc.message.replace(str(path), strip_credentials(model_uri).rstrip("/"))
        raise ModelURIError(f"{message} (downloaded from {location.server})", hint=exc.hint) from exc
    source = location.source or strip_credentials(model_uri)
    logged_at = info.mlmodel.get("artifact_path")
    if location.artifact_path is not None and isinstance(logged_at, str) and ":/" in logged_at:
        source = strip_credentials(logged_at)  # MLflow 3 keeps a run's logged models outside the run
    uses_server = scheme_of(model_uri) in TRACKING_SCHEMES
    return ResolvedModel(
        path=path,
        uri=strip_credentials(model_uri),
        source=source,
        info=info,
        run_id=location.run_id or info.run_id,
        model_name=location.model_name,
        model_version=location.model_version,
        tracking_uri=strip_credentials(servers.tracking_uri) if uses_server else None,
    )


@contextmanager
def _temporary_directory() -> Iterator[Path]:
    """A fresh directory, removed on exit; after Ctrl-C again at interpreter exit, once MLflow's
    download threads (which an interrupt does not stop) have finished writing into it."""
    path = Path(tempfile.mkdtemp(prefix="kiln-model-"))

    def remove() -> None:
        shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    try:
        yield path
    except Exception:
        remove()
        atexit.unregister(remove)
        raise
    except BaseException:  # KeyboardInterrupt, SystemExit: keep the atexit net
        remove()
        raise
    else:
        remove()
        atexit.unregister(remove)
