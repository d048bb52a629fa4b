"""kiln's Python API: ``build`` an image, or ``generate_dockerfile`` for a build context to build later.

Both take the options of ``kiln build`` and ``kiln generate-dockerfile``, by the same names
(``kiln.api.options`` is the one table of them)::

    import kiln
    result = kiln.build("path/to/model", name="my-model:1")
    kiln.generate_dockerfile("path/to/model", output_directory="ctx")

``build_image(BuildOptions(...))`` and ``write_dockerfile(GenerateOptions(...))`` take the frozen
options directly, as the CLI does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.api.options import BuildOptions, GenerateOptions, RecipeOptions, recorded_options
from kiln.api.prepare import Prepared, prepare
from kiln.backends.base import Builder, BuildRequest, BuiltImage, PlatformsBuilder
from kiln.backends.builders import check_options, get_builder
from kiln.backends.docker.builder import DockerBuilder
from kiln.backends.docker.cli import engine_cli
from kiln.backends.docker.load_check import check_model_loads
from kiln.backends.docker.smoke import SmokeResult, smoke_test
from kiln.errors import DockerUnavailableError, KilnError, UsageError
from kiln.image.dockerfile.context import write_context
from kiln.image.spec import ImageSpec
from kiln.model.inputs import BuildInputs, build_inputs
from kiln.progress import LogProgress, Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` made: the image, the spec it was built from, and what the user should know."""

    image: BuiltImage
    spec: ImageSpec
    notes: tuple[str, ...]
    smoke: SmokeResult | None = None


def build(
    model_uri: str | Path | None = None, *, progress: Progress | None = None, **options: Any
) -> BuildResult:
    """Build an image serving the model at ``model_uri`` (None: model-agnostic).

    ``options`` are ``BuildOptions``' fields (``name`` is required); ``backend="oci"`` writes the
    image without a daemon to each ``output`` (``oci:DIR[:TAG]``, ``docker-archive:FILE``,
    ``docker``) and pushes it to each ``push`` reference; with neither, it loads it into Docker.

    Raises a KilnError subclass for anything the user can fix: UsageError, ModelError,
    DependencyError, BuildError (with the failing step's log tail), DockerUnavailableError.
    """
    progress = progress or LogProgress()
    with _failing(progress):
        checked = _options(BuildOptions, model_uri, options)
    return build_image(checked, progress=progress)


def generate_dockerfile(
    model_uri: str | Path | None = None, *, progress: Progress | None = None, **options: Any
) -> Path:
    """Write a Dockerfile and its build context into ``output_directory``; return the Dockerfile's path.

    ``options`` are ``GenerateOptions``' fields. ``docker build output_directory`` then builds the
    same image ``build`` would. Without ``buildkit`` the Dockerfile avoids BuildKit-only syntax, so
    either builder can build it. The base image is inspected with Docker when one answers; without
    Docker only the default ``python:X.Y-slim`` base can be assumed.
    """
    progress = progress or LogProgress()
    with _failing(progress):
        backend = options.pop("backend", "docker")
        if backend != "docker":
            raise UsageError(
                f"generate_dockerfile writes a Dockerfile for the docker backend, not {backend!r} "
                "(the oci backend builds without one: kiln build --backend oci)"
            )
        checked = _options(GenerateOptions, model_uri, options)
    return write_dockerfile(checked, progress=progress)


def build_image(options: BuildOptions, *, progress: Progress | None = None) -> BuildResult:
    """``build`` with its options already gathered (the CLI's entry)."""
    progress = progress or LogProgress()
    ok = False
    try:
        _check_smoke(options)
        check_options(options.backend, options)  # other backends' options are refused before any work
        with _inputs(options) as inputs:
            if options.smoke_test and inputs.model is None and inputs.env_from is None:
                raise UsageError("--smoke-test needs a model: pass -m MODEL or --env-from MODEL_DIR")
            backend = options.backend
            progress.phase(
                "connecting to Docker" if backend == "docker" else f"starting the {backend} backend"
            )
            engine = get_builder(backend, options)
            with tempfile.TemporaryDirectory(prefix="kiln-build-") as tmp:
                requests, ready = _prepare_platforms(options, inputs, engine, Path(tmp), progress)
                progress.phase(f"building image {options.name}")
                if len(requests) == 1:
                    image = engine.build(requests[0], progress)
                else:
                    assert isinstance(engine, PlatformsBuilder)  # check_options refused the others
                    image = engine.build_platforms(requests, progress)
            if options.load_check and inputs.model is not None and len(requests) == 1:
                _load_check(image, ready.spec, progress)
            smoke = _smoke(image, inputs, progress) if options.smoke_test else None
        ok = True
        return BuildResult(image=image, spec=ready.spec, notes=ready.env.notes, smoke=smoke)
    finally:
        progress.finish(ok)


def _prepare_platforms(
    options: BuildOptions, inputs: BuildInputs, engine: Builder, work: Path, progress: Progress
) -> tuple[list[BuildRequest], Prepared]:
    """A BuildRequest per ``--platform`` (each its own lock, wheels and work directory); the first's
    Prepared (the spec the result reports)."""
    requests: list[BuildRequest] = []
    first: Prepared | None = None
    platforms = options.platforms
    for number, platform in enumerate(platforms, 1):
        one = dataclasses.replace(options, platform=platform) if len(platforms) > 1 else options
        here = work / platform.replace("/", "-") if len(platforms) > 1 and platform else work
        here.mkdir(parents=True, exist_ok=True)
        if len(platforms) > 1:
            progress.phase(f"platform {platform} ({number} of {len(platforms)})")
        ready = prepare(one, inputs, engine=engine, buildkit=engine.buildkit, work=here, progress=progress)
        first = first or ready
        requests.append(
            BuildRequest(
                ready.spec,
                ready.env,
                options.name,
                here,
                model_dir=ready.model_dir,
                python_dir=ready.python_dir,
                no_cache=options.no_cache,
                platform=platform,
                parameters=recorded_options(one),
            )
        )
    assert first is not None
    return requests, first


def write_dockerfile(options: GenerateOptions, *, progress: Progress | None = None) -> Path:
    """``generate_dockerfile`` with its options already gathered (the CLI's entry)."""
    progress = progress or LogProgress()
    ok = False
    try:
        with _inputs(options) as inputs, tempfile.TemporaryDirectory(prefix="kiln-generate-") as tmp:
            output = Path(options.output_directory).absolute()
            progress.phase("connecting to Docker")
            engine: Builder | None
            try:
                engine = DockerBuilder.connect()
            except DockerUnavailableError as exc:
                engine = None
                log.warning("%s; the base image cannot be inspected", exc.message)
            ready = prepare(
                options, inputs, engine=engine, buildkit=options.buildkit, work=Path(tmp), progress=progress,
                may_assume=True,
            )  # fmt: skip
            progress.phase("writing the build context")
            dockerfile = write_context(
                ready.spec, ready.env, output, model_dir=ready.model_dir, python_dir=ready.python_dir
            )
        for note in ready.env.notes:
            log.debug("note: %s", note)
        ok = True
        return dockerfile
    finally:
        progress.finish(ok)


@contextlib.contextmanager
def _failing(progress: Progress) -> Iterator[None]:
    """Options refused before the build starts still end the progress display, as a failure."""
    try:
        yield
    except KilnError:
        progress.finish(False)
        raise


def _options(kind: type[Any], model_uri: str | Path | None, options: dict[str, Any]) -> Any:
    """``kind(model_uri=..., **options)``, with a UsageError naming the options an unknown one could be."""
    try:
        return kind(model_uri=model_uri, **options)
    except TypeError as exc:
        names = sorted(kind.__dataclass_fields__)
        raise UsageError(f"{exc} (the options are: {', '.join(names)})") from exc


def _inputs(recipe: RecipeOptions) -> contextlib.AbstractContextManager[BuildInputs]:
    """The model (downloaded when remote) and requirements, for the ``with`` block."""
    return build_inputs(
        recipe.model_uri,
        env_manager=recipe.env_manager,
        requirements=recipe.requirements,
        env_from=recipe.env_from,
        tracking_uri=recipe.tracking_uri,
        registry_uri=recipe.registry_uri,
    )


def _check_smoke(options: BuildOptions) -> None:
    targets = options.output or options.push
    if options.smoke_test and options.backend == "oci" and targets and "docker" not in options.output:
        raise UsageError("--smoke-test with --backend oci needs --output docker (the image is run by Docker)")


def _load_check(image: BuiltImage, spec: ImageSpec, progress: Progress) -> None:
    if not image.in_docker:
        progress.note("the model's load was not checked: the image is not in Docker (add --output docker)")
        return
    progress.phase("checking that the model loads in the image")
    seconds = check_model_loads(engine_cli(), image.image_id, spec.python)
    progress.note(f"the model loads in the image ({seconds:.1f}s; --no-load-check skips this)")


def _smoke(image: BuiltImage, inputs: BuildInputs, progress: Progress) -> SmokeResult:
    model = inputs.model or inputs.env_from
    assert model is not None
    progress.phase(f"smoke test of {image.tag}")
    cli = engine_cli()  # the image is in Docker: built there, or loaded (--output docker)
    result = smoke_test(
        cli, image.image_id, model.path, mount=inputs.model is None, on_output=progress.detail
    )
    ready = f"smoke test: /ping ready in {result.ready_seconds:.1f}s"
    if result.body is not None:
        progress.note(f"{ready}; predictions: {result.body[:500]}")
    else:
        progress.note(f"{ready} (the model saved no input example)")
    return result


__all__ = [
    "BuildOptions",
    "BuildResult",
    "GenerateOptions",
    "KilnError",
    "build",
    "build_image",
    "generate_dockerfile",
    "write_dockerfile",
]
