"""Checks the runtime makes before starting workers, so a bad start fails fast and clearly.

In a model-agnostic image (``KILN_MODEL_AGNOSTIC=true``, set by ``kiln build`` without
``-m``) the mounted model's requirements are checked against the installed
environment: the environment is never rebuilt at start. Missing or mismatched
packages stop the start with a list of them, unless the operator opts in
(``KILN_INSTALL_MISSING_REQUIREMENTS=true``) to installing them from a package index
into ``<runtime dir>/site-packages``, which the workers then find first on sys.path.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path

from kiln import contract, envvars
from kiln.errors import DependencyError
from kiln.model.info import ModelInfo, read_model_info
from kiln.settings import RuntimeSettings

logger = logging.getLogger(__name__)

EXTRA_SITE = "site-packages"
"""Under the runtime dir: where opt-in installs at start go."""


def check_model(settings: RuntimeSettings, environ: MutableMapping[str, str] | None = None) -> ModelInfo:
    """The model at ``settings.model_dir`` is a pyfunc model, or a ModelError says why not.

    In a model-agnostic image, also its requirements are met (or installed, when allowed),
    or a DependencyError lists what is missing.
    """
    environ = os.environ if environ is None else environ
    info = read_model_info(settings.model_dir)
    if is_model_agnostic(environ):
        check_requirements(settings, environ)
    return info


def is_model_agnostic(environ: Mapping[str, str]) -> bool:
    found = envvars.lookup(environ, contract.ENV_MODEL_AGNOSTIC)
    return found is not None and envvars.parse_bool(*found)


def check_requirements(settings: RuntimeSettings, environ: MutableMapping[str, str]) -> None:
    """DependencyError listing the model's requirements this environment does not satisfy."""
    from kiln.env.check import check_model_requirements

    problems = check_model_requirements(settings.model_dir)
    if not problems:
        logger.info("the model's requirements are satisfied by this image's environment")
        return
    listing = "\n".join(f"  - {problem}" for problem in problems)
    if not settings.install_missing:
        raise DependencyError(
            f"the model at {settings.model_dir} needs packages this image does not have "
            f"(the environment is fixed at build time):\n{listing}",
            hint="build an image for this model ('kiln build -m MODEL' or 'kiln build --env-from MODEL'), "
            f"or set {contract.ENV_INSTALL_MISSING[0]}=true to install them at start from a package "
            "index (needs network access; pip's PIP_INDEX_URL etc. apply)",
        )
    logger.warning("installing the model's missing requirements at start:\n%s", listing)
    target = install_missing([problem.requirement for problem in problems], settings.runtime_dir)
    _prepend_path(environ, target)
    remaining = check_model_requirements(settings.model_dir, _versions_with(target))
    if remaining:
        listing = "\n".join(f"  - {problem}" for problem in remaining)
        raise DependencyError(
            f"after installing into {target}, these requirements are still unmet:\n{listing}"
        )


def install_missing(requirements: Sequence[str], runtime_dir: str) -> Path:
    """Install ``requirements`` into ``<runtime_dir>/site-packages`` with the image's installer."""
    target = Path(runtime_dir) / EXTRA_SITE
    target.mkdir(parents=True, exist_ok=True)
    command = _installer_command(Path(runtime_dir), target) + list(requirements)
    logger.info("running %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise DependencyError(
            f"could not install the model's missing requirements into {target} "
            f"(exit {result.returncode}):\n{tail}",
            hint="this needs a reachable package index; or build an image for this model instead",
        )
    return target


def _installer_command(runtime_dir: Path, target: Path) -> list[str]:
    wheels = sorted(Path(contract.INSTALLER_DIR).glob("*.whl"))
    pip_wheels = [w for w in wheels if w.name.startswith("pip-")]
    uv_wheels = [w for w in wheels if w.name.startswith("uv-")]
    common = ["--target", str(target)]
    if pip_wheels:
        pip = str(pip_wheels[-1] / "pip")
        return [sys.executable, pip, "install", "--no-cache-dir", "--disable-pip-version-check", *common]
    if uv_wheels:
        uv = _extract_uv(uv_wheels[-1], runtime_dir / "uv")
        return [uv, "pip", "install", "--python", sys.executable, "--no-cache", *common]
    if importlib.util.find_spec("pip") is None:
        raise DependencyError(
            f"this image has no installer ({contract.INSTALLER_DIR} is empty and pip is not installed), "
            f"so {contract.ENV_INSTALL_MISSING[0]} cannot install anything"
        )
    return [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", *common]


def _extract_uv(wheel: Path, dest: Path) -> str:
    binary = dest / "uv"
    if not binary.exists():
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
            dest.mkdir(parents=True, exist_ok=True)
            binary.write_bytes(archive.read(member))
        binary.chmod(0o755)
    return str(binary)


def _prepend_path(environ: MutableMapping[str, str], target: Path) -> None:
    """Workers inherit the environment: put ``target`` first on their sys.path, and on ours."""
    current = environ.get("PYTHONPATH")
    environ["PYTHONPATH"] = str(target) + (os.pathsep + current if current else "")
    sys.path.insert(0, str(target))


def _versions_with(target: Path) -> dict[str, str]:
    from importlib import metadata

    from packaging.utils import canonicalize_name

    versions: dict[str, str] = {}
    for dist in metadata.distributions(path=[str(target), *sys.path]):
        name = dist.metadata["Name"]
        if name:
            versions.setdefault(canonicalize_name(name), dist.version)
    return versions
