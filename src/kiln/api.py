"""kiln's Python API: ``build`` an image, or ``generate_dockerfile`` for a build context to build later.

Both take the same options as ``kiln build`` and ``kiln generate-dockerfile``::

    import kiln
    result = kiln.build("path/to/model", name="my-model:1")
    kiln.generate_dockerfile("path/to/model", output_directory="ctx")
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln import contract
from kiln.backends.base import Builder, BuildRequest, BuiltImage
from kiln.backends.builders import get_builder
from kiln.backends.docker.smoke import SmokeResult
from kiln.env.resolve import resolve_env
from kiln.env.spec import EnvSpec, TargetPlatform
from kiln.errors import BuildError, DockerUnavailableError, KilnError, UsageError
from kiln.image.base import PythonPlan, default_base_image, describe_mismatch, plan_python, requested_python
from kiln.image.dockerfile.context import write_context
from kiln.image.interpreter import fetch_python
from kiln.image.probe import BaseImageInfo, assumed_python_slim
from kiln.image.spec import ImageOptions, ImageSpec, build_image_spec
from kiln.model.info import ModelInfo
from kiln.model.inputs import BuildInputs, build_inputs
from kiln.progress import LogProgress, Progress

log = logging.getLogger(__name__)

_TAG = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?$"
)


@dataclass(frozen=True)
class _Recipe:
    """The options ``build`` and ``generate_dockerfile`` share: what goes into the image."""

    model_uri: str | Path | None
    env_manager: contract.EnvManager
    base_image: str | None
    install_java: bool
    keep_package_tests: bool
    install_mlflow: bool
    mlflow_home: str | Path | None
    requirements: Sequence[str | Path]
    env_from: str | Path | None
    platform: str | None
    labels: Mapping[str, str] | None
    tracking_uri: str | None
    registry_uri: str | None

    def resolve(self) -> contextlib.AbstractContextManager[BuildInputs]:
        """The model (downloaded when remote) and requirements, for the ``with`` block."""
        return build_inputs(
            self.model_uri,
            env_manager=self.env_manager,
            requirements=self.requirements,
            env_from=self.env_from,
            tracking_uri=self.tracking_uri,
            registry_uri=self.registry_uri,
        )


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` made: the image, the spec it was built from, and what the user should know."""

    image: BuiltImage
    spec: ImageSpec
    notes: tuple[str, ...]
    smoke: SmokeResult | None = None


def build(
    model_uri: str | Path | None = None,
    *,
    name: str,
    env_manager: contract.EnvManager = contract.DEFAULT_ENV_MANAGER,
    base_image: str | None = None,
    install_java: bool = False,
    keep_package_tests: bool = False,
    install_mlflow: bool = False,
    mlflow_home: str | Path | None = None,
    requirements: Sequence[str | Path] = (),
    env_from: str | Path | None = None,
    no_cache: bool = False,
    platform: str | None = None,
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    smoke_test: bool = False,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    progress: Progress | None = None,
    backend: str = "docker",
    output: Sequence[str] = (),
    push: Sequence[str] = (),
) -> BuildResult:
    """Build an image named ``name`` serving the model at ``model_uri`` (None: model-agnostic).

    ``backend="oci"`` writes the image without a daemon (``kiln.backends.oci``) to each
    ``output`` (``oci:DIR[:TAG]``, ``docker-archive:FILE``, ``docker``) and pushes it to each
    ``push`` reference (``REGISTRY/REPO:TAG``); with neither, it loads it into Docker.

    Raises a KilnError subclass for anything the user can fix: ModelError, DependencyError,
    BuildError (with the failing step's log tail), DockerUnavailableError.
    """
    recipe = _Recipe(
        model_uri, env_manager, base_image, install_java, keep_package_tests, install_mlflow,
        mlflow_home, requirements, env_from, platform, labels, tracking_uri, registry_uri,
    )  # fmt: skip
    progress = progress or LogProgress()
    ok = False
    try:
        _check_name(name)
        output = _check_targets(backend, output, push, smoke_test, build_args or {})
        with recipe.resolve() as inputs:
            if smoke_test and inputs.model is None and inputs.env_from is None:
                raise UsageError("--smoke-test needs a model: pass -m MODEL or --env-from MODEL_DIR")
            progress.phase(
                "connecting to Docker" if backend == "docker" else f"starting the {backend} backend"
            )
            engine = get_builder(backend)
            with tempfile.TemporaryDirectory(prefix="kiln-build-") as tmp:
                work = Path(tmp)
                spec, env = _prepare(
                    recipe,
                    inputs,
                    engine=engine,
                    buildkit=engine.buildkit,
                    work=work,
                    context=work / "context",
                    progress=progress,
                )
                progress.phase(f"building image {name}")
                request = BuildRequest(
                    context=work / "context",
                    tag=name,
                    no_cache=no_cache,
                    platform=platform,
                    build_args=tuple((build_args or {}).items()),
                    spec=spec,
                    env=env,
                    outputs=tuple(output),
                    push=tuple(push),
                )
                image = engine.build(request, progress)
            smoke = _smoke(engine, image, inputs, progress) if smoke_test else None
        ok = True
        return BuildResult(image=image, spec=spec, notes=env.notes, smoke=smoke)
    finally:
        progress.finish(ok)


def generate_dockerfile(
    model_uri: str | Path | None = None,
    *,
    output_directory: str | Path,
    env_manager: contract.EnvManager = contract.DEFAULT_ENV_MANAGER,
    base_image: str | None = None,
    install_java: bool = False,
    keep_package_tests: bool = False,
    install_mlflow: bool = False,
    mlflow_home: str | Path | None = None,
    requirements: Sequence[str | Path] = (),
    env_from: str | Path | None = None,
    platform: str | None = None,
    labels: Mapping[str, str] | None = None,
    buildkit: bool = False,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    progress: Progress | None = None,
    backend: str = "docker",
) -> Path:
    """Write a Dockerfile and its build context into ``output_directory``; return the Dockerfile's path.

    ``docker build output_directory`` then builds the same image ``build`` would. Without
    ``buildkit`` the Dockerfile avoids BuildKit-only syntax, so either builder can build it.
    The base image is inspected with Docker when one answers; without Docker only the
    default ``python:X.Y-slim`` base can be assumed.
    """
    recipe = _Recipe(
        model_uri, env_manager, base_image, install_java, keep_package_tests, install_mlflow,
        mlflow_home, requirements, env_from, platform, labels, tracking_uri, registry_uri,
    )  # fmt: skip
    progress = progress or LogProgress()
    ok = False
    try:
        with recipe.resolve() as inputs, tempfile.TemporaryDirectory(prefix="kiln-generate-") as tmp:
            output = Path(output_directory).absolute()
            progress.phase("connecting to Docker")
            try:
                if backend != "docker":
                    raise UsageError(
                        f"generate_dockerfile writes a Dockerfile for the docker backend, not {backend!r} "
                        "(the oci backend builds without one: kiln build --backend oci)"
                    )
                engine: Builder | None = get_builder(backend)
            except DockerUnavailableError as exc:
                engine = None
                log.warning("%s; the base image cannot be inspected", exc.message)
            _spec, env = _prepare(
                recipe,
                inputs,
                engine=engine,
                buildkit=buildkit,
                work=Path(tmp),
                context=output,
                progress=progress,
                may_assume=True,
            )
        for note in env.notes:
            log.debug("note: %s", note)
        ok = True
        return output / "Dockerfile"
    finally:
        progress.finish(ok)


def _prepare(
    recipe: _Recipe,
    inputs: BuildInputs,
    *,
    engine: Builder | None,
    buildkit: bool,
    work: Path,
    context: Path,
    progress: Progress,
    may_assume: bool = False,
) -> tuple[ImageSpec, EnvSpec]:
    """Probe the base, plan the interpreter, resolve the environment, write the build context."""
    env_manager, platform = recipe.env_manager, recipe.platform
    env_model = inputs.model or inputs.env_from
    requested = requested_python(env_model)
    image = recipe.base_image or default_base_image(env_manager, requested)
    progress.phase(f"inspecting base image {image}")
    base = _probe(engine, image, platform, env_manager, requested, may_assume=may_assume)
    plan = plan_python(env_manager, requested, base)
    progress.detail(_describe_base(base, plan))
    python_dir = None
    if plan.bundled:
        progress.phase(f"fetching Python {plan.version} (the base image lacks it)")
        python_dir = fetch_python(
            plan.version,
            platform or base.os_arch,
            work / "python",
            reason=describe_mismatch(base, plan.version),
        )
    progress.phase("resolving the Python environment")
    env = _resolve(
        inputs, env_model, env_manager, plan, base, platform, recipe.install_mlflow, recipe.mlflow_home,
        work, progress,
    )  # fmt: skip
    for note in env.notes:
        progress.note(note)
    options = ImageOptions(
        base_image=image,
        install_java=recipe.install_java,
        keep_package_tests=recipe.keep_package_tests,
        buildkit=buildkit,
        model_uri=inputs.model_uri,
        # What the URI resolved to (run, registered version), then the user's own labels.
        labels=(*inputs.model_labels, *(recipe.labels or {}).items()),
    )
    spec = build_image_spec(inputs.model, env, base, plan, options)
    progress.phase("writing the build context")
    write_context(
        spec, env, context, model_dir=inputs.model.path if inputs.model else None, python_dir=python_dir
    )
    progress.detail(f"build context in {context}")
    return spec, env


def _resolve(
    inputs: BuildInputs,
    env_model: ModelInfo | None,
    env_manager: contract.EnvManager,
    plan: PythonPlan,
    base: BaseImageInfo,
    platform: str | None,
    install_mlflow: bool,
    mlflow_home: str | Path | None,
    work: Path,
    progress: Progress,
) -> EnvSpec:
    target = TargetPlatform(
        python_version=plan.version,
        os_arch=platform or base.os_arch,
        **({"glibc": base.glibc} if base.glibc else {}),
    )
    # local installs with a pinned pip wheel too (the base may have no pip): the lock and the
    # wheelhouse for a target do not depend on the env manager, only the installer does.
    resolve_as: contract.EnvManager = "virtualenv" if env_manager == "local" else env_manager
    env = resolve_env(
        env_model,
        env_manager=resolve_as,
        target=target,
        work_dir=work / "env",
        requirements_files=inputs.requirements,
        install_mlflow=install_mlflow,
        mlflow_home=Path(mlflow_home) if mlflow_home is not None else None,
        progress=progress.detail,
    )
    return dataclasses.replace(env, env_manager=env_manager)


def _probe(
    engine: Builder | None,
    image: str,
    platform: str | None,
    env_manager: contract.EnvManager,
    requested: str | None,
    *,
    may_assume: bool,
) -> BaseImageInfo:
    """Probe ``image``; ``generate_dockerfile`` may assume what the default python:X.Y-slim holds
    when it cannot be inspected (no Docker engine, or no registry to pull it from)."""
    default = default_base_image(env_manager, requested)
    assumable = may_assume and env_manager != "conda" and image == default
    if engine is not None:
        try:
            return engine.probe(image, platform=platform)
        except BuildError as exc:
            if not assumable:
                raise
            log.warning("could not inspect %s: %s", image, exc.message)
    elif not assumable:
        raise DockerUnavailableError(
            f"cannot inspect base image {image!r} without a Docker engine",
            hint="start Docker, or use the default base image (omit --base-image)",
        )
    minor = default.removeprefix("python:").removesuffix("-slim")
    log.warning("assuming %s holds Python %s at /usr/local/bin/python3, apt and no nginx", image, minor)
    return assumed_python_slim(image, minor)


def _describe_base(base: BaseImageInfo, plan: PythonPlan) -> str:
    found = f"Python {base.python_version} at {base.python}" if base.python else "no Python"
    extras = ", ".join(
        part for part in ("nginx" if base.has_nginx else "", "apt" if base.has_apt else "") if part
    )
    how = "bundled (fetched on the host)" if plan.bundled else (plan.interpreter or "from conda")
    return f"{base.image}: {found}{', ' + extras if extras else ''}; environment Python {plan.version}: {how}"


def _check_name(name: str) -> None:
    if not name or not _TAG.match(name) or len(name) > 255:
        raise UsageError(
            f"image name {name!r} is not a valid Docker reference (expected e.g. 'my-model' or "
            "'registry.example.com/team/my-model:1.0', lower case)"
        )


def _check_targets(
    backend: str, output: Sequence[str], push: Sequence[str], smoke_test: bool, build_args: Mapping[str, str]
) -> Sequence[str]:
    """The backend's options checked before any work; the oci backend's default output filled in."""
    if backend != "oci":
        if output or push:
            raise UsageError(
                f"--output and --push need --backend oci (got --backend {backend})",
                hint="add --backend oci, or push the built image with 'docker push'",
            )
        return output
    from kiln.backends.oci import check_build_args, check_targets

    check_build_args(tuple(build_args.items()))
    output = check_targets(output, push)
    if smoke_test and "docker" not in output:
        raise UsageError("--smoke-test with --backend oci needs --output docker (the image is run by Docker)")
    return output


def _smoke(engine: Builder, image: BuiltImage, inputs: BuildInputs, progress: Progress) -> SmokeResult:
    from kiln.backends.docker.builder import DockerBuilder
    from kiln.backends.docker.smoke import smoke_test

    if not isinstance(engine, DockerBuilder):
        engine = DockerBuilder.connect()  # the oci backend loaded the image into it (--output docker)
    model = inputs.model or inputs.env_from
    assert model is not None
    progress.phase(f"smoke test of {image.tag}")
    result = smoke_test(
        engine.cli, image.image_id, model.path, mount=inputs.model is None, on_output=progress.detail
    )
    if result.body is not None:
        progress.note(
            f"smoke test: /ping ready in {result.ready_seconds:.1f}s; predictions: {result.body[:500]}"
        )
    else:
        progress.note(
            f"smoke test: /ping ready in {result.ready_seconds:.1f}s (the model saved no input example)"
        )
    return result


__all__ = ["BuildResult", "KilnError", "build", "generate_dockerfile"]
