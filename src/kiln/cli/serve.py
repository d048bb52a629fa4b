"""``kiln serve``: the container's runtime (nginx + uvicorn workers) on this machine, in this Python."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import click

from kiln import contract, envvars
from kiln.cli import main
from kiln.settings import LOG_LEVELS, RuntimeSettings


@main.command("serve")
@click.option(
    "-m",
    "--model-uri",
    "model_uri",
    required=True,
    metavar="MODEL_URI",
    help="The MLflow model to serve: a local directory, file://, runs:/, models:/, mlflow-artifacts:/ ...",
)
@click.option(
    "--tracking-uri",
    metavar="URI",
    help="MLflow tracking server for runs:/ and models:/ URIs [default: $MLFLOW_TRACKING_URI].",
)
@click.option(
    "--registry-uri",
    metavar="URI",
    help="MLflow model registry, when it differs from the tracking server [default: $MLFLOW_REGISTRY_URI].",
)
@click.option("--port", type=click.IntRange(1, 65535), help=f"Port to serve on [default: {contract.PORT}].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="uvicorn worker processes [default: one per CPU this process may use].",
)
@click.option(
    "--no-nginx",
    "--disable-nginx",
    "disable_nginx",
    is_flag=True,
    default=None,
    help="Serve with uvicorn alone on the port, without nginx in front.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help=f"Answer 504 when a request takes longer [default: {contract.DEFAULT_REQUEST_TIMEOUT:g}].",
)
@click.option(
    "--max-body-size",
    metavar="SIZE",
    help="Largest request body, e.g. 100m or 1g; larger ones get 413 [default: 100m].",
)
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help=f"Time to finish in-flight requests on SIGTERM [default: {contract.DEFAULT_GRACE_PERIOD:g}].",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=0),
    metavar="N",
    help="Scoring requests one worker holds at once (being predicted or waiting); more get an "
    f"immediate 503 with Retry-After. 0: no limit [default: {contract.DEFAULT_MAX_QUEUE}].",
)
@click.option("--metrics/--no-metrics", default=None, help="Prometheus metrics on /metrics [default: on].")
@click.option(
    "--openapi/--no-openapi",
    default=None,
    help="The model's OpenAPI document on /openapi.json and a docs page on /docs [default: on].",
)
@click.option(
    "--expose-tracebacks",
    is_flag=True,
    default=None,
    help="Include stack traces of model errors in error answers.",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), help="Log level [default: info].")
@click.option("--model-config", metavar="JSON", help="JSON object passed to the model's loader.")
@click.option(
    "--runtime-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Where the runtime writes its socket, nginx.conf and temp files [default: a fresh temp dir].",
)
@click.pass_context
def serve(
    ctx: click.Context,
    /,
    model_uri: str,
    tracking_uri: str | None,
    registry_uri: str | None,
    port: int | None,
    workers: int | None,
    disable_nginx: bool | None,
    request_timeout: float | None,
    max_body_size: str | None,
    grace_period: float | None,
    max_queue: int | None,
    metrics: bool | None,
    openapi: bool | None,
    expose_tracebacks: bool | None,
    log_level: str | None,
    model_config: str | None,
    runtime_dir: str | None,
) -> None:
    """Serve an MLflow model like the container does: nginx in front of uvicorn workers.

    Every option can also be set with its environment variable (e.g. KILN_WORKERS or
    MLFLOW_MODELS_WORKERS, KILN_REQUEST_TIMEOUT, DISABLE_NGINX); options win. Stops
    gracefully on Ctrl+C or SIGTERM.
    """
    from kiln.model.resolve import resolve_model
    from kiln.runtime import serve as run_runtime
    from kiln.runtime.logs import configure_logging

    overrides: dict[str, Any] = {
        "port": port,
        "workers": workers,
        "disable_nginx": disable_nginx,
        "request_timeout": request_timeout,
        "grace_period": grace_period,
        "max_queue": max_queue,
        "metrics": metrics,
        "openapi": openapi,
        "expose_tracebacks": expose_tracebacks,
        "log_level": log_level,
    }
    if max_body_size is not None:
        overrides["max_body_size"] = envvars.parse_size("--max-body-size", max_body_size)
    if model_config is not None:
        overrides["model_config"] = envvars.parse_json_object("--model-config", model_config)
    debug = bool(ctx.obj and ctx.obj.get("debug"))
    # Settings are checked before a possibly long download; the model dir is filled in after.
    RuntimeSettings.from_env(os.environ, **overrides)
    resolving = resolve_model(model_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
    with resolving as resolved, _runtime_dir(runtime_dir) as directory:
        settings = RuntimeSettings.from_env(
            os.environ, runtime_dir=directory, model_dir=str(resolved.path.resolve()), **overrides
        )
        configure_logging("debug" if debug else settings.log_level)
        code = run_runtime(settings)
    ctx.exit(code)


@contextlib.contextmanager
def _runtime_dir(given: str | None) -> Iterator[str | None]:
    """``--runtime-dir``, else KILN_RUNTIME_DIR, else a fresh temp dir removed afterwards."""
    if given is not None or envvars.lookup(os.environ, contract.ENV_RUNTIME_DIR) is not None:
        yield given
        return
    directory = tempfile.mkdtemp(prefix="kiln-serve-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
