"""``kiln serve``: the container's runtime (nginx + uvicorn workers) on this machine, in this Python."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from kiln import contract, envvars
from kiln.cli import main
from kiln.errors import UsageError
from kiln.settings import SETTINGS, RuntimeSettings, Setting

F = TypeVar("F", bound=Callable[..., Any])


class _SettingType(click.ParamType):  # type: ignore[type-arg]
    """A setting's value from the command line, parsed as its environment variable would be."""

    def __init__(self, row: Setting) -> None:
        self.row = row
        self.name = (row.metavar or row.kind.metavar or "text").lower()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.row.kind.parse(self.row.options[0], value)
        except UsageError as exc:
            self.fail(exc.message, param, ctx)


def _setting_option(row: Setting) -> Callable[[F], F]:
    """The ``kiln serve`` option of one row of the settings table."""
    kwargs: dict[str, Any] = {"default": None, "help": row.cli_help()}
    if row.negation is not None:
        return click.option(f"{row.options[0]}/{row.negation}", row.name, **kwargs)
    if row.is_flag:
        return click.option(*row.options, row.name, is_flag=True, **kwargs)
    if row.kind.choices:
        return click.option(*row.options, row.name, type=click.Choice(row.kind.choices), **kwargs)
    metavar = row.metavar or row.kind.metavar
    return click.option(*row.options, row.name, type=_SettingType(row), metavar=metavar, **kwargs)


def _setting_options(func: F) -> F:
    """Every setting that has a ``kiln serve`` option, in the table's order."""
    for row in reversed(SETTINGS):
        if row.options:
            func = _setting_option(row)(func)
    return func


def _serve_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """The options given, plus ``kiln serve``'s own defaults (host: loopback) where neither the option
    nor an environment variable sets the setting; the image keeps the table's defaults."""
    overrides = dict(values)
    for row in SETTINGS:
        unset = overrides.get(row.name) is None and envvars.lookup(os.environ, row.env) is None
        if row.serve_default is not None and unset:
            overrides[row.name] = row.serve_default
    return overrides


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
@_setting_options
@click.pass_context
def serve(
    ctx: click.Context, /, model_uri: str, tracking_uri: str | None, registry_uri: str | None, **values: Any
) -> None:
    """Serve an MLflow model like the container does: nginx in front of uvicorn workers.

    Every option can also be set with its environment variable (e.g. KILN_WORKERS or
    MLFLOW_MODELS_WORKERS, KILN_REQUEST_TIMEOUT, DISABLE_NGINX); options win. Stops
    gracefully on Ctrl+C or SIGTERM. On this machine it listens on 127.0.0.1 only, unless
    --host (KILN_HOST) says otherwise; the image listens on every interface.
    """
    from kiln.model.resolve import resolve_model
    from kiln.runtime import serve as run_runtime
    from kiln.runtime.logs import configure_logging

    overrides = _serve_defaults(values)
    debug = bool(ctx.obj and ctx.obj.get("debug"))
    # Settings are checked before a possibly long download; the model dir is filled in after.
    RuntimeSettings.from_env(os.environ, **overrides)
    resolving = resolve_model(model_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
    with resolving as resolved, _runtime_dir(overrides["runtime_dir"]) as directory:
        found = {"runtime_dir": directory, "model_dir": str(resolved.path.resolve())}
        settings = RuntimeSettings.from_env(os.environ, **{**overrides, **found})
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
