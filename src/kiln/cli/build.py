"""``kiln build`` and ``kiln generate-dockerfile``: options in, ``kiln.api`` call, result out."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from kiln import contract
from kiln.cli import main
from kiln.errors import UsageError
from kiln.progress import LogProgress, Progress, QuietProgress, RichProgress

F = TypeVar("F", bound=Callable[..., Any])
BACKENDS = ("docker", "oci")


def _shared_options(func: F) -> F:
    """The options ``build`` and ``generate-dockerfile`` share, with the same defaults."""
    options = [
        click.option(
            "-m",
            "--model-uri",
            metavar="MODEL_URI",
            help="The MLflow model to package: a local directory, file://, runs:/RUN/PATH, "
            "models:/NAME/VERSION, models:/NAME@ALIAS, mlflow-artifacts:/... "
            "Without it the image is model-agnostic: mount a model at " + contract.MODEL_DIR + ".",
        ),
        click.option(
            "--tracking-uri",
            metavar="URI",
            help="MLflow tracking server for runs:/ and models:/ URIs [default: $MLFLOW_TRACKING_URI]. "
            "Credentials are used on this machine only, never put in the image.",
        ),
        click.option(
            "--registry-uri",
            metavar="URI",
            help="MLflow model registry, when it differs from the tracking server "
            "[default: $MLFLOW_REGISTRY_URI].",
        ),
        click.option(
            "--env-manager",
            type=click.Choice(contract.ENV_MANAGERS),
            default=contract.DEFAULT_ENV_MANAGER,
            show_default=True,
            help="How the model's environment is made: an isolated venv (virtualenv, uv), the base "
            "image's own Python (local), or a conda environment (conda).",
        ),
        click.option(
            "--base-image",
            metavar="IMAGE",
            help="Base image [default: python:X.Y-slim for the model's Python X.Y].",
        ),
        click.option(
            "--install-java",
            type=bool,
            is_flag=False,
            flag_value=True,
            default=False,
            metavar="[true|false]",
            help="Install a Java runtime (Debian's default-jre-headless). Without it, no JDK/JRE.",
        ),
        click.option(
            "--keep-package-tests",
            is_flag=True,
            help="Keep the test suites that packages ship (tests/ in site-packages; about 100 MB "
            "for scikit-learn, scipy, numpy and pandas). kiln drops them by default.",
        ),
        click.option(
            "--install-mlflow",
            is_flag=True,
            help="Install MLflow even if the model's requirements do not name it.",
        ),
        click.option(
            "--mlflow-home",
            type=click.Path(exists=True, file_okay=False),
            metavar="PATH",
            help="Install MLflow from this local checkout instead of from the index.",
        ),
        click.option(
            "--requirements",
            "requirements",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False),
            metavar="FILE",
            help="Extra requirements file (repeatable); for a model-agnostic image, its environment.",
        ),
        click.option(
            "--env-from",
            metavar="MODEL_URI",
            help="Model-agnostic image: use the environment of this model (a directory or any -m URI).",
        ),
        click.option(
            "--platform",
            metavar="OS/ARCH",
            help="Target platform, e.g. linux/amd64 [default: the base image's].",
        ),
        click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Add an image label."),
        click.option("-q", "--quiet", is_flag=True, help="Print only the result; errors still go to stderr."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command("build")
@_shared_options
@click.option("-n", "--name", required=True, metavar="NAME[:TAG]", help="The image's name and tag.")
@click.option("--no-cache", is_flag=True, help="Build every layer afresh.")
@click.option(
    "--build-arg", "build_args", multiple=True, metavar="KEY=VALUE", help="A docker build argument."
)
@click.option(
    "--smoke-test",
    is_flag=True,
    help="Start the built image, wait for /ping, score the model's saved input example, remove it.",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="docker",
    show_default=True,
    help="Who builds: the Docker engine from a Dockerfile (docker), or kiln itself, without a daemon, "
    "reproducibly (oci).",
)
@click.option(
    "--output",
    "output",
    multiple=True,
    metavar="TARGET",
    help="--backend oci: write the image to oci:DIR[:TAG] (an OCI layout), docker-archive:FILE "
    "(for 'docker load') or docker (load it into the running engine; the default). Repeatable.",
)
@click.option(
    "--push",
    "push",
    multiple=True,
    metavar="REGISTRY/REPO:TAG",
    help="--backend oci: push the image to this registry reference (Docker's credentials). Repeatable.",
)
def build(
    model_uri: str | None, quiet: bool, labels: Sequence[str], build_args: Sequence[str], **options: Any
) -> None:
    """Build a Docker image that serves an MLflow model on port 8080."""
    from kiln import api

    result = api.build(
        model_uri,
        labels=_pairs("--label", labels),
        build_args=_pairs("--build-arg", build_args),
        progress=_progress(quiet),
        **options,
    )
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
    if image.digest:
        click.echo(f"Manifest digest: {image.digest}")
    for written in image.outputs:
        click.echo(f"Wrote {written}")
    for pushed in image.pushed:
        click.echo(
            f"Pushed {pushed.reference}: {len(pushed.uploaded)} blobs uploaded "
            f"({pushed.bytes_uploaded} bytes), {len(pushed.reused)} already there"
        )
    if result.smoke is not None and result.smoke.body is not None:
        click.echo(f"Smoke test predictions: {result.smoke.body[:2000]}")
    if image.builder != "oci" or "docker" in image.outputs:
        click.echo(f"Run it: docker run --rm -p {contract.PORT}:{contract.PORT} {image.tag}")


@main.command("generate-dockerfile")
@_shared_options
@click.option(
    "-d",
    "--output-directory",
    default="mlflow-dockerfile",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to write the Dockerfile and its build context.",
)
@click.option(
    "--buildkit/--no-buildkit",
    default=False,
    help="Use BuildKit-only syntax (cache and bind mounts) [default: no, any builder builds it].",
)
def generate_dockerfile(model_uri: str | None, quiet: bool, labels: Sequence[str], **options: Any) -> None:
    """Write a Dockerfile and its build context, to build later with 'docker build DIR'."""
    from kiln import api

    dockerfile = api.generate_dockerfile(
        model_uri, labels=_pairs("--label", labels), progress=_progress(quiet), **options
    )
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


def _pairs(option: str, values: Sequence[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} {value!r} is not KEY=VALUE")
        pairs[key.strip()] = rest
    return pairs
