"""What a remote model URI points to: run and registry lookups with MLflow's client, before download.

``runs:/`` URIs check the run; ``models:/`` URIs resolve an alias, a stage or ``latest`` to
the version it points to now, so the download cannot race an alias that moves meanwhile.
Errors name the URI, the server and what exists instead (versions, aliases, artifacts).
"""

from __future__ import annotations

import logging
import posixpath
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiln.errors import ModelURIError
from kiln.model.failures import detail, error_code, explain, is_not_found
from kiln.model.servers import Servers
from kiln.model.uri import scheme_of, strip_credentials

logger = logging.getLogger(__name__)

TRACKING_SCHEMES = ("runs", "models", "mlflow-artifacts")
"""URIs that are looked up on (or downloaded through) the tracking server."""

_PROBED_SCHEMES = ("mlflow-artifacts", "http", "https")


@dataclass(frozen=True)
class Location:
    """Where a model URI's artifacts are, as far as the tracking server and registry say."""

    download_uri: str
    """What MLflow downloads: the URI itself, or ``models:/name/<version>`` for an alias."""
    server: str
    """The tracking server or registry, described for messages (no credentials)."""
    source: str | None = None
    """The storage location MLflow reports (e.g. ``mlflow-artifacts:/1/models/m-.../artifacts``)."""
    run_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    artifact_path: str | None = None
    """For ``runs:/``: the path inside the run."""


def locate(model_uri: str, servers: Servers) -> Location:
    """Look ``model_uri`` up; raise ModelURIError naming the URI and the server when it is not there."""
    from mlflow import MlflowClient

    scheme = scheme_of(model_uri)
    if scheme in ("runs", "models"):
        client = MlflowClient(tracking_uri=servers.tracking_uri, registry_uri=servers.registry_uri)
        if scheme == "runs":
            return _locate_run(client, model_uri, servers)
        return _locate_registered(client, model_uri, servers)
    if scheme in _PROBED_SCHEMES:
        _probe(model_uri, servers)
    server = servers.tracking if scheme in TRACKING_SCHEMES else "its artifact store"
    return Location(download_uri=model_uri, server=server, source=strip_credentials(model_uri))


def subject(model_uri: str) -> str:
    """``model URI 'runs:/...'`` for messages."""
    return f"model URI {strip_credentials(model_uri)!r}"


def _locate_run(client: Any, model_uri: str, servers: Servers) -> Location:
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    try:
        run_id, artifact_path = RunsArtifactRepository.parse_runs_uri(model_uri)  # type: ignore[no-untyped-call]
    except MlflowException as exc:
        raise ModelURIError(
            f"{subject(model_uri)} is not a valid runs:/ URI (expected runs:/<run_id>/<artifact_path>)"
        ) from exc
    missing = f"run {run_id!r} does not exist"
    run = _lookup(lambda: client.get_run(run_id), model_uri, servers.tracking, missing)
    root = run.info.artifact_uri
    return Location(
        download_uri=model_uri,
        server=servers.tracking,
        source=strip_credentials(posixpath.join(root, artifact_path) if artifact_path else root),
        run_id=run_id,
        artifact_path=artifact_path or "",
    )


def run_artifact_names(model_uri: str, servers: Servers) -> list[str]:
    """The top-level artifacts and logged models of a ``runs:/`` URI's run, for a hint; [] on failure."""
    from mlflow import MlflowClient
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    try:
        run_id, _ = RunsArtifactRepository.parse_runs_uri(model_uri)  # type: ignore[no-untyped-call]
        client = MlflowClient(tracking_uri=servers.tracking_uri, registry_uri=servers.registry_uri)
        names = {posixpath.basename(a.path) for a in client.list_artifacts(run_id)}
        experiment = client.get_run(run_id).info.experiment_id
        models = client.search_logged_models(
            experiment_ids=[experiment], filter_string=f"source_run_id = '{run_id}'"
        )
        names.update(m.name for m in models)
        return sorted(names)
    except Exception:  # only a hint: the error being reported matters more
        logger.debug("cannot list the artifacts of %s", strip_credentials(model_uri), exc_info=True)
        return []


def _locate_registered(client: Any, model_uri: str, servers: Servers) -> Location:
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    base, sub_path = ModelsArtifactRepository.split_models_uri(model_uri)  # type: ignore[no-untyped-call]
    parsed = urllib.parse.urlparse(base)
    parts = parsed.path.lstrip("/").split("/")
    if parsed.netloc:  # models://<profile>@databricks/...: MLflow resolves the profile itself
        return Location(download_uri=model_uri, server=servers.registry, source=None)
    if len(parts) == 1 and "@" in parts[0]:
        name, alias = parts[0].rsplit("@", 1)
        version = _alias_version(client, model_uri, name, alias, servers)
    elif len(parts) == 1 and parts[0]:
        return _locate_logged_model(client, model_uri, parts[0], servers)
    elif len(parts) == 2 and all(parts):
        name, version = parts[0], parts[1]
        if not version.isdigit():  # a stage or "latest": MLflow's own rule picks the version
            version = _stage_version(client, model_uri, base, servers)
    else:
        raise ModelURIError(
            f"{subject(model_uri)} is not a valid models:/ URI "
            "(expected models:/<name>/<version>, models:/<name>@<alias> or models:/<model_id>)"
        )
    version_info = _model_version(client, model_uri, name, version, servers)
    try:
        source = client.get_model_version_download_uri(name, version)
    except Exception as exc:
        raise explain(exc, subject=subject(model_uri), server=servers.registry) from exc
    pinned = f"models:/{name}/{version}" + (f"/{sub_path}" if sub_path else "")
    return Location(
        download_uri=pinned,
        server=servers.registry,
        source=strip_credentials(posixpath.join(source, sub_path) if sub_path else source),
        run_id=version_info.run_id or None,
        model_name=name,
        model_version=str(version),
    )


def _alias_version(client: Any, model_uri: str, name: str, alias: str, servers: Servers) -> str:
    registered = _registered_model(client, model_uri, name, servers)
    aliases: dict[str, str] = dict(getattr(registered, "aliases", None) or {})
    if alias not in aliases:
        known = ", ".join(f"{a} -> version {v}" for a, v in sorted(aliases.items())) or "none"
        raise ModelURIError(
            f"{subject(model_uri)} not found in {servers.registry}: registered model {name!r} "
            f"has no alias {alias!r} (its aliases: {known})"
        )
    return str(aliases[alias])


def _stage_version(client: Any, model_uri: str, base: str, servers: Servers) -> str:
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    try:
        found = get_model_name_and_version(client, base)  # type: ignore[no-untyped-call]
        return str(found[-1])
    except Exception as exc:
        if error_code(exc) in (None, "INTERNAL_ERROR", "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            message = f"{subject(model_uri)} not found in {servers.registry}: {detail(exc)}"
            raise ModelURIError(message) from exc
        raise explain(exc, subject=subject(model_uri), server=servers.registry) from exc


def _model_version(client: Any, model_uri: str, name: str, version: str, servers: Servers) -> Any:
    try:
        return client.get_model_version(name, version)
    except Exception as exc:
        if not is_not_found(exc):
            raise explain(exc, subject=subject(model_uri), server=servers.registry) from exc
        _registered_model(client, model_uri, name, servers)  # says so when the model itself is missing
        raise ModelURIError(
            f"{subject(model_uri)} not found in {servers.registry}: registered model {name!r} "
            f"has no version {version} (its versions: {_versions(client, name)})"
        ) from exc


def _registered_model(client: Any, model_uri: str, name: str, servers: Servers) -> Any:
    missing = f"there is no registered model {name!r}"
    return _lookup(lambda: client.get_registered_model(name), model_uri, servers.registry, missing, "in")


def _versions(client: Any, name: str) -> str:
    quoted = name.replace("\\", "\\\\").replace("'", "\\'")
    try:
        found = client.search_model_versions(f"name = '{quoted}'")
    except Exception:  # only a hint
        return "unknown"
    return ", ".join(str(v) for v in sorted(int(m.version) for m in found)) or "none"


def _locate_logged_model(client: Any, model_uri: str, model_id: str, servers: Servers) -> Location:
    missing = (
        f"there is no logged model {model_id!r} "
        "(registered models: models:/<name>/<version> or models:/<name>@<alias>)"
    )
    logged = _lookup(lambda: client.get_logged_model(model_id), model_uri, servers.tracking, missing)
    return Location(
        download_uri=model_uri,
        server=servers.tracking,
        source=strip_credentials(logged.artifact_location),
        run_id=logged.source_run_id or None,
    )


def _lookup(call: Callable[[], Any], model_uri: str, server: str, missing: str, on: str = "on") -> Any:
    """``call()``; MLflow's "not found" becomes ``<URI> not found on <server>: <missing>``."""
    try:
        return call()
    except Exception as exc:
        if is_not_found(exc):
            raise ModelURIError(f"{subject(model_uri)} not found {on} {server}: {missing}") from exc
        raise explain(exc, subject=subject(model_uri), server=server) from exc


def _probe(model_uri: str, servers: Servers) -> None:
    """One listing call, so an unreachable server or refused credentials fail before the download."""
    import mlflow.artifacts

    server = servers.tracking if scheme_of(model_uri) == "mlflow-artifacts" else "its artifact server"
    try:
        mlflow.artifacts.list_artifacts(artifact_uri=model_uri)
    except Exception as exc:
        raise explain(exc, subject=subject(model_uri), server=server) from exc
