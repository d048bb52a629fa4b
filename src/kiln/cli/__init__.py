"""The kiln command line: parse arguments, call the library, print. No logic lives here."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from kiln.errors import KilnError
from kiln.version import __version__


class _KilnGroup(click.Group):
    """Turns a KilnError into ``Error: ...`` and its exit code instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KilnError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {exc.format()}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_KilnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kiln")
@click.option("--debug", is_flag=True, help="Show debug logs and full tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Package MLflow models into production container images, and serve them."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )


def _register() -> None:
    # Each command lives in its own module; importing it registers it on ``main``.
    from kiln.cli import build, push, serve  # noqa: F401


_register()
