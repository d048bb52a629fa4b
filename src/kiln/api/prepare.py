"""The stages every build shares: probe the base, plan the interpreter, resolve the environment, decide
the ImageSpec. Nothing here writes a build context; each backend lays out what it needs."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from kiln import contract
from kiln.api.options import RecipeOptions, runtime_environment, runtime_labels
from kiln.backends.base import Builder
from kiln.env.resolve import resolve_env
from kiln.env.spec import EnvSpec, TargetPlatform
from kiln.errors import BuildError, DockerUnavailableError
from kiln.image.base import PythonPlan, default_base_image, describe_mismatch, plan_python, requested_python
from kiln.image.interpreter import fetch_python
from kiln.image.probe import BaseImageInfo, assumed_python_slim
from kiln.image.spec import ImageOptions, ImageSpec, build_image_spec
from kiln.image.system_packages import decide_system_packages
from kiln.model.info import ModelInfo
from kiln.model.inputs import BuildInputs
from kiln.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """What a backend builds from: the spec, the resolved environment, and the host files it names."""

    spec: ImageSpec
    env: EnvSpec
    model_dir: Path | None
    python_dir: Path | None
    """A relocatable CPython fetched on the host, when the base image lacks the right one."""


def prepare(
    recipe: RecipeOptions,
    inputs: BuildInputs,
    *,
    engine: Builder | None,
    buildkit: bool,
    work: Path,
    progress: Progress,
    may_assume: bool = False,
) -> Prepared:
    """Probe the base, plan the interpreter, resolve the environment, decide the ImageSpec."""
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
    env = _resolve(recipe, inputs, env_model, plan, base, work, progress)
    for note in env.notes:
        progress.note(note)
    system = decide_system_packages(recipe.system_packages, env, base, say=progress.detail)
    for note in system.notes:
        progress.note(note)
    options = ImageOptions(
        base_image=image,
        install_java=recipe.install_java,
        keep_package_tests=recipe.keep_package_tests,
        keep_debug_info=recipe.keep_debug_info,
        buildkit=buildkit,
        model_uri=inputs.model_uri,
        # What the URI resolved to (run, registered version), then the user's own labels.
        labels=(*inputs.model_labels, *runtime_labels(recipe), *recipe.labels.items()),
        system_packages=system.packages,
        accelerator=env.accelerator,
        runtime_environment=runtime_environment(recipe),
    )
    spec = build_image_spec(inputs.model, env, base, plan, options)
    return Prepared(spec, env, inputs.model.path if inputs.model else None, python_dir)


def _resolve(
    recipe: RecipeOptions,
    inputs: BuildInputs,
    env_model: ModelInfo | None,
    plan: PythonPlan,
    base: BaseImageInfo,
    work: Path,
    progress: Progress,
) -> EnvSpec:
    env_manager, platform, mlflow_home = recipe.env_manager, recipe.platform, recipe.mlflow_home
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
        install_mlflow=recipe.install_mlflow,
        accelerator=None if recipe.accelerator == "auto" else recipe.accelerator,
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
