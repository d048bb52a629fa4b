"""The conda environment layer written on the host (``--backend oci``), as the Docker env stage makes it.

The conda packages are installed offline for ``/opt/kiln/conda-env`` once per lock
(``kiln.env.conda.installed_environment``: rattler, prefix placeholders filled) and copied
under the staging root; the pip section's locked wheels are checked against the lock's
hashes and installed into the environment's site-packages with pypa/installer, as the
venv layer installs them; the packages' ``tests/`` are dropped by the same rule; the
wheels get deterministic bytecode from a host Python of the environment's ``X.Y`` (when
there is one: ``kiln.image.layers.pyinstall``); both locks go to ``/opt/kiln``. Nothing
here runs the image or reaches a channel, and the same lock gives the same bytes.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from kiln import contract
from kiln.env.conda import PreparedCondaEnvironment, installed_environment
from kiln.env.spec import EnvSpec
from kiln.errors import BuildError
from kiln.image import facts
from kiln.image.layers.pyinstall import (
    Scheme,
    compile_bytecode,
    host_python_for,
    install_wheels,
    normalize_modes,
)
from kiln.image.layers.venv import prune_tests
from kiln.image.layers.wheels import locked_wheels
from kiln.image.secrets import check_no_secrets, scrub_lock
from kiln.image.spec import ImageSpec

log = logging.getLogger(__name__)


def install_conda_layer(dest: Path, *, spec: ImageSpec, env: EnvSpec, compile: bool = True) -> None:
    """Write the conda environment layer's files under ``dest`` (the image's ``/``)."""
    conda = _prepared(env)
    prefix = contract.CONDA_ENV_DIR
    tree = installed_environment(conda.lock, conda.packages_dir, prefix=prefix)
    shutil.copytree(tree, _host(dest, prefix), symlinks=True)
    conda_lock = conda.conda_lock_file.read_text(encoding="utf-8")
    texts = [(f"the conda lock {conda.conda_lock_file}", conda_lock)]
    _write(dest, facts.CONDA_LOCK_PATH, conda_lock)
    if conda.pip_lock_file is not None and conda.wheelhouse is not None:
        pip_lock = scrub_lock(conda.pip_lock_file.read_text(encoding="utf-8"))
        texts.append((f"the conda pip lock {conda.pip_lock_file}", pip_lock))
        _write(dest, facts.CONDA_PIP_LOCK_PATH, pip_lock)
        wheels = locked_wheels(pip_lock, conda.wheelhouse, conda.target)
        installed = install_wheels(dest, [wheel.path for wheel in wheels], _scheme(spec), requested=True)
    else:
        installed = []
    check_no_secrets(texts, "")
    if spec.prune_package_tests:
        prune_tests(dest, spec.site_packages)
    python = host_python_for(spec.python_version) if compile else None
    if python is not None:
        compile_bytecode(dest, installed, python)
    elif compile:
        log.info("no Python %s on this host: the pip section's packages get no bytecode", spec.python_version)
    normalize_modes(dest)


def conda_inputs(env: EnvSpec) -> dict[str, str | None]:
    """What the layer's bytes depend on besides kiln's code: both locks (the packages are pinned by them)."""
    conda = _prepared(env)
    return {"conda": conda.digest, "subdir": conda.lock.subdir}


def _prepared(env: EnvSpec) -> PreparedCondaEnvironment:
    if env.conda is None:
        raise BuildError("--env-manager conda: the environment was not prepared on the host (no conda lock)")
    return env.conda


def _scheme(spec: ImageSpec) -> Scheme:
    prefix = contract.CONDA_ENV_DIR
    return Scheme(
        site_packages=spec.site_packages,
        scripts=f"{prefix}/bin",
        data=prefix,
        include=f"{prefix}/include/site/python{spec.python_version}",
        interpreter=spec.python,
    )


def _write(dest: Path, image_path: str, text: str) -> None:
    path = _host(dest, image_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _host(root: Path, image_path: str) -> Path:
    return root / image_path.lstrip("/")
