"""``kiln build`` and ``kiln generate-dockerfile``: options in, ``kiln.api`` call, result out."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from kiln import contract
from kiln.api.options import BuildOptions, GenerateOptions, OptionField, RecipeOptions, option_fields
from kiln.backends.base import BuiltImage
from kiln.cli import main
from kiln.cli.options import click_options, field_values
from kiln.progress import LogProgress, Progress, QuietProgress, RichProgress

F = TypeVar("F", bound=Callable[..., Any])

BUILD_OPTIONS = option_fields(BuildOptions)
GENERATE_OPTIONS = option_fields(GenerateOptions)
_RECIPE = len(option_fields(RecipeOptions))
_QUIET = click.option("-q", "--quiet", is_flag=True, help="Print only the result; errors still go to stderr.")


def _command_options(rows: tuple[OptionField, ...]) -> Callable[[F], F]:
    """The table's options, with ``-q`` between the shared ones and the command's own (as they were)."""

    def apply(func: F) -> F:
        func = click_options(rows[_RECIPE:])(func)
        func = _QUIET(func)
        return click_options(rows[:_RECIPE])(func)

    return apply


@main.command("build")
@_command_options(BUILD_OPTIONS)
def build(quiet: bool, **values: Any) -> None:
    """Build a Docker image that serves an MLflow model on port 8080."""
    from kiln import api

    options = BuildOptions(**field_values(BUILD_OPTIONS, values))
    result = api.build_image(options, progress=_progress(quiet))
    image = result.image
    if quiet:
        click.echo(image.digest or image.image_id)
        return
    cached = sum(step.cached for step in image.steps)
    unit = "layers" if image.builder == "oci" else "steps"
    click.echo(
        f"Built {image.tag} ({image.image_id[:19]}) with {image.builder} in {image.seconds:.0f}s; "
        f"{cached} of {len(image.steps)} {unit} from cache"
    )
    _digests(image)
    for published in image.published:
        if published.pushed:
            click.echo(
                f"Pushed {published.target}: {len(published.uploaded)} blobs uploaded "
                f"({published.bytes_uploaded} bytes), {len(published.reused)} already there"
            )
        else:
            click.echo(f"Wrote {published.target}")
    if result.smoke is not None and result.smoke.body is not None:
        click.echo(f"Smoke test predictions: {result.smoke.body[:2000]}")
    if image.in_docker:
        click.echo(f"Run it: docker run --rm -p {contract.PORT}:{contract.PORT} {image.tag}")


def _digests(image: BuiltImage) -> None:
    """The digests to pin: the manifest's, or the index's and each platform's manifest's; the SBOM."""
    if len(image.platforms) > 1:
        click.echo(f"Image index digest: {image.digest}")
        for one in image.platforms:
            click.echo(f"  {one.platform}: {one.digest}")
    elif image.digest:
        click.echo(f"Manifest digest: {image.digest}")
    if image.sbom:
        pushed = any(p.pushed for p in image.published) and any(one.attached for one in image.platforms)
        how = "; SBOM and provenance attached to the pushed image (referrers)" if pushed else ""
        click.echo(f"SBOM: {image.sbom} in the image{how}")


@main.command("generate-dockerfile")
@_command_options(GENERATE_OPTIONS)
def generate_dockerfile(quiet: bool, **values: Any) -> None:
    """Write a Dockerfile and its build context, to build later with 'docker build DIR'."""
    from kiln import api

    options = GenerateOptions(**field_values(GENERATE_OPTIONS, values))
    dockerfile = api.write_dockerfile(options, progress=_progress(quiet))
    if quiet:
        click.echo(str(dockerfile))
        return
    click.echo(f"Wrote {dockerfile} and its build context; build it with: docker build {dockerfile.parent}")


def _progress(quiet: bool) -> Progress:
    if quiet:
        return QuietProgress()
    if sys.stderr.isatty():
        return RichProgress()
    return LogProgress()
