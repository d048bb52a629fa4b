"""ImageSpec: everything the Dockerfile says, decided once from (ModelInfo | None, EnvSpec, BaseImageInfo)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kiln import contract
from kiln.env.accelerators import Accelerator
from kiln.env.spec import EnvSpec
from kiln.env.trim import mlflow_only
from kiln.errors import BuildError
from kiln.image import facts
from kiln.image.base import PythonPlan, describe_mismatch
from kiln.image.finish import BytecodePlan
from kiln.image.model_files import LARGE_FILE_SIZE, ModelLayout, plan_model_layout
from kiln.image.probe import BaseImageInfo
from kiln.image.secrets import scrub_lock
from kiln.model.info import ModelInfo, signature_summary
from kiln.model.uri import strip_credentials
from kiln.version import __version__

Installer = Literal["pip-wheel", "pip-module", "uv-wheel"]
"""``pip-module``: ``python -m pip`` of the base's Python (local) or of the conda environment."""

JAVA_PACKAGE = "default-jre-headless"
NGINX_PACKAGE = "nginx"
BUILD_DIR = "/tmp/kiln-build"
"""Where builder stages see the context's kiln/ files (bind mount or copy)."""


@dataclass(frozen=True)
class ContextFiles:
    """Paths inside the build context (relative, POSIX) of what the Dockerfile installs."""

    kiln_wheel: str
    lock: str | None = None
    wheelhouse: str | None = None
    installer: str | None = None
    python: str | None = None
    """A relocatable CPython fetched on the host (base image without the right Python)."""
    conda_env: str | None = None
    """The conda packages installed on the host for the image's prefix (``kiln.env.conda``)."""
    conda_lock: str | None = None
    conda_pip_lock: str | None = None
    model: str | None = None
    large_model_files: str | None = None
    """Where the model's large files are (a ``COPY`` each); ``model`` holds the rest."""
    finish: str | None = None
    """``kiln.image.finish`` as a file: the builder stages finish the environment with it."""
    stripped: str | None = None
    """The wheels' libraries without debug sections and their manifest (``kiln.image.debuginfo``)."""


@dataclass(frozen=True)
class ImageOptions:
    """The user's choices that shape the image beyond the model and its environment."""

    base_image: str
    install_java: bool = False
    keep_package_tests: bool = False
    """Keep the test suites packages ship (``tests/`` in site-packages); kiln drops them by default."""
    keep_debug_info: bool = False
    """Keep the debug sections of the wheels' shared libraries; kiln strips them by default."""
    buildkit: bool = True
    """Render BuildKit-only syntax (cache and bind mounts); False builds with the classic builder too."""
    model_uri: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    """The user's ``--label`` values; they win over kiln's."""
    system_packages: tuple[str, ...] = ()
    """Debian packages to add beyond nginx and the JRE: ``--system-package`` and native-library needs."""
    accelerator: Accelerator = "cpu"
    """``cuda``: the image says so to the NVIDIA container toolkit and to kiln's runtime."""
    large_file_size: int = LARGE_FILE_SIZE
    """A model file this big or bigger gets an image layer of its own."""
    runtime_environment: tuple[tuple[str, str], ...] = ()
    """Runtime settings the build bakes in (``--max-batch-size``...): variables of the image's config."""


@dataclass(frozen=True)
class ImageSpec:
    """A frozen description of one image: stages, layers and config. Rendered by ``render_dockerfile``
    (Docker backend) and by ``kiln.image.layers`` (OCI backend); constant facts are in ``facts``."""

    base_image: str
    env_manager: contract.EnvManager
    python_version: str
    """``X.Y`` of the environment's interpreter."""
    build_python: str | None
    """The interpreter the builder stage creates the venv with (or installs into, for local)."""
    python: str
    """The interpreter in the final image that runs kiln (ENTRYPOINT, HEALTHCHECK)."""
    installer: Installer
    files: ContextFiles
    buildkit: bool
    system_packages: tuple[str, ...]
    java: bool
    prune_package_tests: bool
    """Remove ``tests/`` directories from site-packages in the env stage (scipy, sklearn, numpy,
    pandas ship about 100 MB of them; nothing imports them when serving)."""
    model_agnostic: bool
    labels: tuple[tuple[str, str], ...]
    environment: tuple[tuple[str, str], ...]
    site_packages: str
    """Where the environment's packages live in the image (for the kiln stage's ``--target``)."""
    entrypoint: tuple[str, ...]
    """The image's ENTRYPOINT (exec form): ``python -m kiln.runtime`` by the image's interpreter."""
    healthcheck: facts.Healthcheck
    """The image's HEALTHCHECK: ``python -m kiln.runtime.healthcheck`` and the timings in ``facts``."""
    uid: int = contract.UID
    gid: int = contract.GID
    kiln_version: str = __version__
    model_layout: ModelLayout = field(default_factory=ModelLayout)
    """The model's large files, a layer each before the small-files layer, in both backends."""
    strip_debug_info: bool = False
    """Replace the wheels' shared libraries that have debug sections with stripped copies
    (``kiln.image.debuginfo``; pip-installed environments)."""
    bytecode: BytecodePlan = field(default_factory=BytecodePlan)
    """Which packages get bytecode only for the modules the start imports (``kiln.image.finish``)."""
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def bundled_python(self) -> bool:
        return self.files.python is not None

    @property
    def keeps_installer(self) -> bool:
        """A model-agnostic image keeps the installer wheel (at ``contract.INSTALLER_DIR``) for the
        opt-in install of a mounted model's missing packages at start."""
        return self.model_agnostic and self.files.installer is not None

    @property
    def prefix(self) -> str | None:
        """The environment's prefix in the image (venv or conda env); None for local."""
        if self.env_manager in ("virtualenv", "uv"):
            return contract.VENV_DIR
        if self.env_manager == "conda":
            return contract.CONDA_ENV_DIR
        return None


BUNDLED_PYTHON_DIR = f"{contract.KILN_HOME}/python"


def context_files(
    env: EnvSpec, *, bundled_python: bool, with_model: bool, large_files: bool = False, strip: bool = True
) -> ContextFiles:
    """Where ``write_context`` puts each input: fixed folders, the wheels keep their names."""
    conda = env.conda
    return ContextFiles(
        kiln_wheel=f"kiln/dist/{env.kiln_wheel.name}",
        lock="kiln/requirements.lock" if env.lock_file is not None else None,
        wheelhouse="kiln/wheelhouse" if env.wheelhouse is not None or (conda and conda.wheelhouse) else None,
        installer=f"kiln/installer/{env.installer_wheel.name}" if env.installer_wheel else None,
        python="kiln/python" if bundled_python else None,
        conda_env="kiln/conda-env" if conda else None,
        conda_lock="kiln/conda.lock" if conda else None,
        conda_pip_lock="kiln/conda-pip.lock" if conda and conda.pip_lock_file else None,
        model="model" if with_model else None,
        large_model_files="model-large" if with_model and large_files else None,
        finish=None if conda else "kiln/finish.py",
        stripped="kiln/stripped" if strip and not conda else None,
    )


def lock_digest(env: EnvSpec) -> str:
    """``sha256:`` of the lock as it goes into the image (index options scrubbed)."""
    if env.lock_file is None:
        return env.lock_digest
    text = scrub_lock(env.lock_file.read_text(encoding="utf-8"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_image_spec(
    model: ModelInfo | None,
    env: EnvSpec,
    base: BaseImageInfo,
    plan: PythonPlan,
    options: ImageOptions,
) -> ImageSpec:
    """Decide every line of the Dockerfile; raise BuildError for combinations that cannot work."""
    installer = _installer(env, base)
    layout = ModelLayout(options.large_file_size)
    if model is not None:
        layout = plan_model_layout(Path(model.path), options.large_file_size)
    files = context_files(
        env,
        bundled_python=plan.bundled,
        with_model=model is not None,
        large_files=bool(layout.large),
        strip=not options.keep_debug_info,
    )
    build_python, python, site = _interpreters(env.env_manager, plan, base)
    packages: list[str] = []
    if not base.has_nginx:
        packages.append(NGINX_PACKAGE)
    if options.install_java:
        packages.append(JAVA_PACKAGE)
    packages += [name for name in options.system_packages if name not in packages]
    if packages and not base.has_apt:
        raise BuildError(
            f"base image {base.image!r} has no apt-get, so kiln cannot install {', '.join(packages)}",
            hint="use a Debian or Ubuntu based image (e.g. python:3.11-slim), or one that already has nginx",
        )
    return ImageSpec(
        base_image=options.base_image,
        env_manager=env.env_manager,
        python_version=plan.version,
        build_python=build_python,
        python=python,
        installer=installer,
        files=files,
        buildkit=options.buildkit,
        system_packages=tuple(packages),
        java=options.install_java,
        prune_package_tests=not options.keep_package_tests,
        model_agnostic=model is None,
        labels=_labels(model, env, plan, options, packages),
        environment=(
            *_environment(env.env_manager, options.install_java, model is None, options.accelerator),
            *options.runtime_environment,
        ),
        site_packages=site,
        entrypoint=facts.entrypoint(python),
        healthcheck=facts.healthcheck(python),
        model_layout=layout,
        strip_debug_info=files.stripped is not None,
        bytecode=bytecode_plan(model, env),
        notes=env.notes,
    )


def bytecode_plan(model: ModelInfo | None, env: EnvSpec) -> BytecodePlan:
    """Bytecode for the start's imports only in the packages that only MLflow needs (pip-installed
    environments; a conda environment's packages come compiled as they are)."""
    if env.env_manager == "conda" or env.lock_file is None:
        return BytecodePlan()
    start_only = mlflow_only(env.lock_file.read_text(encoding="utf-8"))
    probe = list(facts.START_IMPORTS)
    loader = model.loader_module if model is not None else None
    if loader and loader.startswith("mlflow.") and loader not in probe:
        probe.append(loader)
    return BytecodePlan(tuple(sorted(start_only)), tuple(probe))


def _installer(env: EnvSpec, base: BaseImageInfo) -> Installer:
    if env.env_manager == "conda":
        return "pip-module"  # the conda environment's own pip (its locks always hold kiln's runtime)
    wheel = env.installer_wheel
    if wheel is not None and wheel.name.startswith("uv-"):
        return "uv-wheel"
    if wheel is not None and wheel.name.startswith("pip-"):
        return "pip-wheel"
    if env.env_manager == "uv":
        raise BuildError(f"--env-manager uv needs a uv wheel for the image, got {wheel!s}")
    if env.env_manager == "local" and base.pip_version:
        return "pip-module"
    raise BuildError(
        f"no installer for --env-manager {env.env_manager}: the environment has no pip wheel "
        f"and base image {base.image!r} has no pip"
    )


def _interpreters(env_manager: str, plan: PythonPlan, base: BaseImageInfo) -> tuple[str | None, str, str]:
    """(interpreter for the builder stage, interpreter in the final image, site-packages dir)."""
    minor = plan.version
    if env_manager == "conda":
        return (
            None,
            f"{contract.CONDA_ENV_DIR}/bin/python",
            f"{contract.CONDA_ENV_DIR}/lib/python{minor}/site-packages",
        )
    source = f"{BUNDLED_PYTHON_DIR}/bin/python3" if plan.bundled else plan.interpreter
    if source is None:
        raise BuildError(describe_mismatch(base, minor))
    if env_manager == "local":
        return source, source, ""
    return source, f"{contract.VENV_DIR}/bin/python", f"{contract.VENV_DIR}/lib/python{minor}/site-packages"


def _environment(
    env_manager: str, java: bool, agnostic: bool, accelerator: Accelerator = "cpu"
) -> tuple[tuple[str, str], ...]:
    env: list[tuple[str, str]] = []
    if env_manager in ("virtualenv", "uv"):
        env.append(("PATH", f"{contract.VENV_DIR}/bin:$PATH"))
        env.append(("VIRTUAL_ENV", contract.VENV_DIR))
    elif env_manager == "conda":
        env.append(("PATH", f"{contract.CONDA_ENV_DIR}/bin:$PATH"))
    env += [("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1"), ("HOME", facts.USER_HOME)]
    if java:
        env.append(("JAVA_HOME", "/usr/lib/jvm/default-java"))
    if agnostic:
        env.append((contract.ENV_MODEL_AGNOSTIC[0], "true"))
    if accelerator == "cuda":
        # What the NVIDIA container toolkit reads (every GPU the runtime was given, compute only) and
        # what kiln's runtime reads (one worker per GPU, each pinned).
        env += [
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"),
            (contract.ENV_ACCELERATOR[0], "cuda"),
        ]
    return tuple(env)


def _labels(
    model: ModelInfo | None,
    env: EnvSpec,
    plan: PythonPlan,
    options: ImageOptions,
    packages: list[str],
) -> tuple[tuple[str, str], ...]:
    title = Path(model.path).resolve().name if model is not None else "model-agnostic"
    labels: dict[str, str] = {
        "org.opencontainers.image.title": f"kiln: {title}",
        "org.opencontainers.image.description": (
            f"MLflow model server for {title}, built by kiln {__version__}"
            if model is not None
            else f"kiln {__version__} model server; mount an MLflow model at {contract.MODEL_DIR}"
        ),
        "org.opencontainers.image.base.name": options.base_image,
        contract.LABEL_VERSION: __version__,
        contract.LABEL_ENV_MANAGER: env.env_manager,
        contract.LABEL_PYTHON_VERSION: plan.version,
        contract.LABEL_LOCK_DIGEST: lock_digest(env),
        contract.LABEL_MODEL_AGNOSTIC: "true" if model is None else "false",
        contract.LABEL_ACCELERATOR: options.accelerator,
    }
    if packages:
        labels[contract.LABEL_SYSTEM_PACKAGES] = ",".join(packages)
    if model is not None:
        if options.model_uri:
            labels[contract.LABEL_MODEL_URI] = strip_credentials(options.model_uri)
        if model.run_id:
            labels[contract.LABEL_MODEL_RUN_ID] = model.run_id
        labels[contract.LABEL_MODEL_FLAVORS] = ",".join(model.flavors)
        signature = signature_summary(model)
        if signature:
            labels[contract.LABEL_MODEL_SIGNATURE] = signature
    labels.update(dict(options.labels))
    return tuple(labels.items())
