"""ModelInfo -> EnvSpec: read the environment, settle MLflow, lock for the image, fetch on the host.

``resolve_env`` writes into ``work_dir`` (which becomes part of the build context)::

    requirements.lock     every package pinned with --hash lines (not for conda)
    wheelhouse/           exactly the wheels the lock names, for the image's platform
    installer/            the pip wheel (virtualenv) or uv wheel (uv) used to install them
    kiln/                 a wheel of the running kiln
    conda/                conda only: conda.lock, conda-pip.lock, conda-pkgs/, conda-wheelhouse/
                          (``kiln.env.conda.prepare``)

Nothing written there names an index or carries a credential.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from kiln.contract import RUNTIME_REQUIREMENTS, EnvManager
from kiln.env import platform
from kiln.env.accelerators import Accelerator, choose_variants, cuda_libraries, cuda_note, detect
from kiln.env.cache import atomic_write, cache_root
from kiln.env.conda import parse_conda_environment, prepare_conda_environment
from kiln.env.fetch import fetch_wheels
from kiln.env.kiln_wheel import build_kiln_wheel
from kiln.env.lockfile import LockEntry, add_hashes, ensure_no_credentials, lock_digest, parse_lock
from kiln.env.locking import LockRequest, UnavailableError, compile_lock
from kiln.env.mlflow_choice import SKINNY, MlflowChoice, choose_mlflow, host_mlflow_version
from kiln.env.requirements import ParsedRequirements, read_requirements_file
from kiln.env.sources import ModelEnvironment, read_model_environment
from kiln.env.spec import EnvSpec, TargetPlatform
from kiln.env.trim import trim_lock
from kiln.env.uvproject import uv_project_requirements
from kiln.env.wheelbuild import build_mlflow_home
from kiln.errors import DependencyError, UsageError
from kiln.model.info import ModelInfo

logger = logging.getLogger(__name__)

LOCK_NAME = "requirements.lock"
WHEELHOUSE = "wheelhouse"
INSTALLER_DIR = "installer"
KILN_DIR = "kiln"
CONDA_DIR = "conda"
_DEFAULT_CONDA = {"channels": ["conda-forge"], "dependencies": []}
"""No model (a requirements file, --env-from without conda.yaml): the pip section on conda-forge's Python."""


@dataclass(frozen=True)
class _Environment:
    """The environment's own requirements, before kiln's runtime is added."""

    parsed: ParsedRequirements
    label: str
    model: ModelEnvironment | None
    notes: tuple[str, ...] = ()
    """Where the requirements came from, when that is worth saying (a uv.lock)."""


def resolve_env(
    model: ModelInfo | None,
    *,
    env_manager: EnvManager,
    target: TargetPlatform,
    work_dir: Path,
    requirements_files: Sequence[Path] = (),
    install_mlflow: bool = False,
    mlflow_home: Path | None = None,
    accelerator: Accelerator | None = None,
    progress: Callable[[str], None] | None = None,
) -> EnvSpec:
    """Lock and fetch the environment for ``model`` (or ``requirements_files``) for ``target``.

    ``accelerator`` picks the CPU or CUDA variant of packages that have both (None: ``cuda`` when
    the model's requirements name a CUDA build, else ``cpu``; ``kiln.env.accelerators``)."""
    platform.validate(target)
    say = _reporter(progress)
    work_dir = Path(work_dir)
    _clear_outputs(work_dir)
    environment = _read_environment(model, requirements_files, prefer_conda=env_manager == "conda")
    if env_manager == "conda":
        _refuse_local_wheels_for_conda(environment, mlflow_home)
    notes = _environment_notes(environment, model, target)
    with tempfile.TemporaryDirectory(prefix="kiln-mlflow-home-") as scratch:
        local_mlflow = None
        if mlflow_home is not None:
            say(f"building MLflow from {mlflow_home}")
            local_mlflow = build_mlflow_home(Path(mlflow_home), Path(scratch))
        choice = choose_mlflow(
            [line.requirement for line in environment.parsed.requirements],
            install_mlflow=install_mlflow,
            local_mlflow=_wheel_pin(local_mlflow) if local_mlflow else None,
            default_version=(model.mlflow_version if model else None) or host_mlflow_version(),
        )
        kiln_wheel, kiln_digest = build_kiln_wheel(work_dir / KILN_DIR)
        say(f"built {kiln_wheel.name} from the running kiln")
        if env_manager == "conda":
            return _conda_spec(environment, choice, target, work_dir, kiln_wheel, kiln_digest, notes, say)
        accelerator = accelerator or detect(choice.requirements)
        request, lock, notes = _lock_and_fetch(
            environment, choice, accelerator, local_mlflow, target, work_dir, notes, say
        )
    installer = _installer(env_manager, environment.model, target, work_dir, cache_root(), say)
    return EnvSpec(
        env_manager=env_manager,
        target=target,
        requirements=request.requirements + request.runtime,
        lock_file=work_dir / LOCK_NAME,
        lock_digest=lock_digest(lock),
        wheelhouse=work_dir / WHEELHOUSE,
        kiln_wheel=kiln_wheel,
        kiln_wheel_digest=kiln_digest,
        installer_wheel=installer,
        notes=tuple(notes),
        accelerator=accelerator,
    )


def _lock_and_fetch(
    environment: _Environment,
    choice: MlflowChoice,
    accelerator: Accelerator,
    local_mlflow: Path | None,
    target: TargetPlatform,
    work_dir: Path,
    notes: list[str],
    say: Callable[[str], None],
) -> tuple[LockRequest, str, list[str]]:
    """Lock the requirements with uv, fetch the locked wheels with pip, write the lock; return the
    request as locked, the lock's text and the notes."""
    cache_dir = cache_root()
    local_wheels = tuple(
        line.local_wheel for line in environment.parsed.requirements if line.local_wheel is not None
    ) + ((local_mlflow,) if local_mlflow else ())
    request = LockRequest(
        target=target,
        requirements=(),
        runtime=RUNTIME_REQUIREMENTS,
        constraints=tuple(str(line) for line in environment.parsed.constraints),
        local_wheels=local_wheels,
        label=environment.label,
    )
    request, text, notes = lock_variants(request, choice, accelerator, notes, cache_dir, say)
    trimmed = trim_lock(text)
    if trimmed.left_out:
        text = trimmed.text
        left_out = ", ".join(trimmed.left_out)
        notes.append(f"left out {left_out}: MLflow requires them, serving never imports them")
    entries = parse_lock(text)
    fetched = fetch_wheels(
        entries, target=target, dest=work_dir / WHEELHOUSE, cache_dir=cache_dir, local_wheels=local_wheels
    )
    say(f"fetched {len(fetched.wheels)} wheels ({fetched.from_cache} from cache)")
    if fetched.extra_hashes:
        text = add_hashes(text, dict(fetched.extra_hashes))
        built = ", ".join(name for name, _ in fetched.extra_hashes)
        notes.append(f"built pure-Python wheels on the host for packages published only as sdists: {built}")
    lock = _lock_header(target) + text
    ensure_no_credentials(lock, "the lock")
    atomic_write(work_dir / LOCK_NAME, lock.encode("utf-8"))
    return request, lock, notes


def _clear_outputs(work_dir: Path) -> None:
    """Remove what an earlier run left, so a failed or different build cannot reuse stale files."""
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / LOCK_NAME).unlink(missing_ok=True)
    for name in (WHEELHOUSE, INSTALLER_DIR, KILN_DIR, CONDA_DIR):
        if (work_dir / name).is_dir():
            shutil.rmtree(work_dir / name)


def _refuse_local_wheels_for_conda(environment: _Environment, mlflow_home: Path | None) -> None:
    if mlflow_home is not None:
        raise UsageError(
            "--mlflow-home is not supported with --env-manager conda",
            hint="use --env-manager virtualenv or uv, which install the MLflow wheel built from it",
        )
    wheels = [line for line in environment.parsed.requirements if line.local_wheel is not None]
    if wheels:
        names = ", ".join(f"{line.origin}: {line.local_wheel.name}" for line in wheels if line.local_wheel)
        raise DependencyError(
            f"wheels shipped inside the model cannot be installed by the conda env manager ({names})",
            hint="use --env-manager virtualenv or uv",
        )


def _read_environment(
    model: ModelInfo | None, requirements_files: Sequence[Path], *, prefer_conda: bool
) -> _Environment:
    parsed = ParsedRequirements()
    model_env = None
    notes: tuple[str, ...] = ()
    if model is not None:
        model_env = read_model_environment(model, prefer_conda=prefer_conda)
        parsed = model_env.requirements
        project = None if prefer_conda else uv_project_requirements(model.path)
        if project is not None:
            parsed, notes = project.requirements, (project.note,)
    for path in requirements_files:
        parsed = parsed + read_requirements_file(Path(path))
    label = "model" if model is not None else "requirements"
    return _Environment(parsed, label, model_env, notes)


def _environment_notes(
    environment: _Environment, model: ModelInfo | None, target: TargetPlatform
) -> list[str]:
    notes = list(environment.notes)
    if environment.parsed.ignored_options:
        notes.append(
            "ignored options in the requirements (kiln uses the host's pip/uv configuration): "
            + "; ".join(environment.parsed.ignored_options)
        )
    saved_with = (environment.model.python_version if environment.model else None) or (
        model.python_version if model else None
    )
    if saved_with and ".".join(saved_with.split(".")[:2]) != target.python_version:
        notes.append(
            f"the model was saved with Python {saved_with}; the image runs Python {target.python_version}"
        )
    return notes


def lock_variants(
    request: LockRequest,
    choice: MlflowChoice,
    accelerator: Accelerator,
    notes: list[str],
    cache_dir: Path,
    say: Callable[[str], None],
) -> tuple[LockRequest, str, list[str]]:
    """Resolve with mlflow-skinny and the accelerator's variants; fall back to the full mlflow, and to
    the packages the model named, when those are not on the configured indexes."""
    target = request.target
    variants = choose_variants(choice.requirements, accelerator)
    mlflow_notes = list(choice.notes)
    unavailable: set[str] = set()
    for _ in range(1 + len(variants.swaps) + 1):
        request = dataclasses.replace(request, requirements=_strings(variants.requirements))
        count = len(request.requirements) + len(request.runtime)
        say(f"resolving {count} requirements for Python {target.python_version} {target.os_arch}")
        try:
            text, cached = compile_lock(request, cache_dir=cache_dir)
            break
        except UnavailableError as exc:
            missing = {s.variant_name for s in variants.swaps} & exc.names
            if missing:
                unavailable |= missing
                variants = variants.without(missing)
                notes.append(
                    f"{', '.join(sorted(missing))}: not on the configured indexes; kept the model's pin"
                )
            elif choice.fallback is not None and SKINNY in exc.names:
                variants = choose_variants(choice.fallback, accelerator).without(unavailable)
                mlflow_notes = (choice.fallback_note or "").splitlines()
                choice = dataclasses.replace(choice, fallback=None)
            else:
                raise
    entries = parse_lock(text)
    say(f"locked {len(entries)} packages" + (" (lock from cache)" if cached else ""))
    notes = [*notes, *mlflow_notes, *variants.notes()]
    libraries = cuda_libraries(entry.name for entry in entries) if accelerator == "cpu" else ()
    if libraries:
        notes.append(cuda_note(libraries, request.requirements))
    return request, text, notes


def _conda_spec(
    environment: _Environment,
    choice: MlflowChoice,
    target: TargetPlatform,
    work_dir: Path,
    kiln_wheel: Path,
    kiln_digest: str,
    notes: list[str],
    say: Callable[[str], None],
) -> EnvSpec:
    """Solve, lock and fetch the model's conda environment on the host (``kiln.env.conda``):
    its conda packages from its channels, its pip section (MLflow settled, kiln's runtime
    added) locked with uv for the environment's own Python."""
    requirements = _strings(choice.requirements)
    conda = environment.model.conda if environment.model else None
    origin = environment.model.source if environment.model else "the default conda environment"
    parsed = parse_conda_environment(conda if conda is not None else _DEFAULT_CONDA, origin=origin)
    prepared = prepare_conda_environment(
        parsed,
        target=target,
        work_dir=work_dir / CONDA_DIR,
        pip_requirements=requirements,
        runtime=RUNTIME_REQUIREMENTS,
        progress=say,
    )
    python = prepared.target.python_version
    if python != target.python_version:
        notes.append(f"the conda environment's Python is {python} (the model named {target.python_version})")
    return EnvSpec(
        env_manager="conda",
        target=prepared.target,
        requirements=requirements + RUNTIME_REQUIREMENTS,
        lock_file=None,
        lock_digest=prepared.digest,
        wheelhouse=None,
        kiln_wheel=kiln_wheel,
        kiln_wheel_digest=kiln_digest,
        conda=prepared,
        notes=(*notes, *choice.notes),
    )


def _installer(
    env_manager: EnvManager,
    model_env: ModelEnvironment | None,
    target: TargetPlatform,
    work_dir: Path,
    cache_dir: Path,
    say: Callable[[str], None],
) -> Path | None:
    """The pip wheel (virtualenv) or uv wheel (uv) the image installs the lock with."""
    if env_manager == "virtualenv":
        requirement = _pinned_build_dependency(model_env, "pip") or "pip"
    elif env_manager == "uv":
        requirement = f"uv=={metadata.version('uv')}"
    else:
        return None
    request = LockRequest(target=target, requirements=(requirement,), runtime=(), label="installer")
    text, _cached = compile_lock(request, cache_dir=cache_dir)
    entries = [
        entry for entry in parse_lock(text) if entry.name == canonicalize_name(Requirement(requirement).name)
    ]
    fetched = fetch_wheels(
        _one(entries, requirement), target=target, dest=work_dir / INSTALLER_DIR, cache_dir=cache_dir
    )
    wheel = fetched.wheels[0]
    say(f"installer: {wheel.name}")
    return wheel


def _pinned_build_dependency(model_env: ModelEnvironment | None, name: str) -> str | None:
    for line in model_env.build_dependencies if model_env else ():
        try:
            requirement = Requirement(line)
        except ValueError:
            continue
        if canonicalize_name(requirement.name) == name and requirement.specifier:
            return str(requirement)
    return None


def _one(entries: list[LockEntry], requirement: str) -> list[LockEntry]:
    if len(entries) != 1:
        raise DependencyError(
            f"resolving the installer {requirement!r} gave {len(entries)} matching packages"
        )
    return entries


def _wheel_pin(wheel: Path) -> tuple[str, str]:
    name, version, _build, _tags = parse_wheel_filename(wheel.name)
    return str(name), str(version)


def _strings(requirements: Sequence[Requirement]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for requirement in requirements:
        seen.setdefault(str(requirement), None)
    return tuple(seen)


def _lock_header(target: TargetPlatform) -> str:
    return (
        f"# kiln lock for CPython {target.python_version} on {platform.uv_python_platform(target)}.\n"
        "# Install offline: --no-index --find-links <wheelhouse> --require-hashes --no-deps -r <this file>\n"
    )


def _reporter(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    def say(message: str) -> None:
        logger.debug("%s", message)
        if progress is not None:
            progress(message)

    return say
