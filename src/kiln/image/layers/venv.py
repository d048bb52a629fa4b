"""The environment and kiln layers, written on the host into staging roots that mirror the image.

``install_environment`` makes what the Docker backend's env stage makes by running
``python -m venv --without-pip`` and ``pip install --require-hashes`` in the image:
the venv at ``/opt/kiln/venv`` for the base's interpreter (pyvenv.cfg, the python
symlinks, ``lib64``, activation scripts from the base's own ``venv`` package), every
locked wheel installed into it with pypa/installer, the packages' ``tests/`` dropped
(the Dockerfile's rule), and the scrubbed lock at ``/opt/kiln/requirements.lock``.
``install_kiln`` writes kiln's own wheel into the same site-packages, in a separate
tree because it is its own layer. Nothing here runs the image.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shlex
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from kiln import contract
from kiln.env.spec import EnvSpec
from kiln.errors import BuildError
from kiln.image.debuginfo import strip_wheels
from kiln.image.facts import is_pruned, venv_command
from kiln.image.finish import apply_overlay, compile_environment
from kiln.image.layers.pyinstall import (
    Installed,
    Scheme,
    compile_bytecode,
    host_python_for,
    install_wheels,
    normalize_modes,
)
from kiln.image.layers.wheels import DOCKER_HINT, locked_wheels
from kiln.image.secrets import check_no_secrets, scrub_lock
from kiln.image.spec import BUNDLED_PYTHON_DIR, ImageSpec
from kiln.oci.basefs import DirectoryFiles, is_dir, realpath
from kiln.oci.types import BaseFiles

log = logging.getLogger(__name__)

_QUOTED_PLACEHOLDER = re.compile("[\"'](?:__VENV_DIR__|__VENV_PROMPT__)[\"']")


def install_environment(
    dest: Path,
    *,
    spec: ImageSpec,
    env: EnvSpec,
    base: BaseFiles,
    base_python_version: str,
    python_dir: Path | None = None,
    compile: bool = True,
) -> None:
    """Write the environment layer's files under ``dest`` (the image's ``/``; created if missing).

    ``base`` is the base image's filesystem (the interpreter's real path, its ``venv``
    scripts, and for ``--env-manager local`` its site-packages); ``base_python_version``
    is the full version of ``spec.build_python`` (``3.11.2``) for pyvenv.cfg;
    ``python_dir`` is the bundled CPython when ``spec.bundled_python``. ``compile=False``
    skips bytecode (see ``kiln.image.layers.pyinstall``). Raises BuildError for what cannot
    be installed without running the image, DependencyError for a hash mismatch.
    """
    _refuse_conda(spec)
    if env.lock_file is None or env.wheelhouse is None:
        raise BuildError(f"the {spec.env_manager} environment has no lock and wheelhouse to install")
    lock = scrub_lock(env.lock_file.read_text(encoding="utf-8"))
    check_no_secrets([(f"the lock {env.lock_file}", lock)], "")
    wheels = locked_wheels(lock, env.wheelhouse, env.target)
    dest.mkdir(parents=True, exist_ok=True)
    files = base
    if spec.bundled_python:
        if python_dir is None:
            raise ValueError("spec bundles a Python but no python_dir was given")
        shutil.copytree(python_dir, _host(dest, BUNDLED_PYTHON_DIR), symlinks=True)
        files = DirectoryFiles(python_dir, BUNDLED_PYTHON_DIR)
    scheme = _scheme(spec, files)
    if spec.prefix is not None:
        write_venv(dest, python=_interpreter(spec), version=base_python_version, files=files)
    install_wheels(dest, [w.path for w in wheels], scheme, requested=True)
    if spec.strip_debug_info:
        stripped = strip_wheels(w.path for w in wheels)
        entries = [(item.path, item.original_sha256, str(item.stripped)) for item in stripped]
        apply_overlay(str(_host(dest, scheme.site_packages)), entries)
    if spec.prune_package_tests:
        prune_tests(dest, scheme.site_packages)
    if compile:
        _environment_bytecode(dest, spec, scheme.site_packages)
    lock_path = _host(dest, contract.LOCK_PATH)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path.write_text(lock, encoding="utf-8")
    normalize_modes(dest)


def install_kiln(
    dest: Path,
    *,
    spec: ImageSpec,
    kiln_wheel: Path,
    base: BaseFiles,
    installer_wheel: Path | None = None,
    compile: bool = True,
) -> None:
    """Write the kiln layer under ``dest``: kiln's wheel without dependencies into the environment's
    site-packages, plus, for a model-agnostic image, the installer wheel kept for the opt-in
    install at start (``/opt/kiln/installer``). For conda, the conda environment's site-packages."""
    scheme = _scheme(spec, base)  # a bundled Python only goes with a venv, whose scheme needs no files
    dest.mkdir(parents=True, exist_ok=True)
    installed = install_wheels(dest, [kiln_wheel], scheme, requested=True)
    if compile:
        _bytecode(dest, installed, spec.python_version)
    if spec.keeps_installer and installer_wheel is not None:
        target = _host(dest, contract.INSTALLER_DIR) / installer_wheel.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(installer_wheel, target)
    normalize_modes(dest)


def _refuse_conda(spec: ImageSpec) -> None:
    if spec.env_manager == "conda":
        raise BuildError("the conda environment layer is made by kiln.image.layers.conda, not here")


def _environment_bytecode(dest: Path, spec: ImageSpec, site_packages: str) -> None:
    """The environment's pycs as the Docker backend's env stage writes them (``kiln.image.finish``)."""
    python = _compiler(spec.python_version)
    if python is None:
        return
    note, failed = compile_environment(
        python,
        str(_host(dest, site_packages)),
        shown_as=site_packages,
        start_only=spec.bytecode.start_only,
        probe_modules=spec.bytecode.probe,
    )
    if note:
        log.info("bytecode: %s", note)
    if failed:
        name, error = failed[0]
        raise BuildError(f"compiling the bytecode of {name} with {python} failed", log_tail=error)


def _bytecode(dest: Path, installed: Sequence[Installed], version: str) -> None:
    python = _compiler(version)
    if python is not None:
        compile_bytecode(dest, installed, python)


def _compiler(version: str) -> str | None:
    """The host's Python ``version`` that compiles the image's bytecode; None (and says so) if none."""
    python = host_python_for(version)
    if python is None:
        log.info("no Python %s on this host: the image's packages get no bytecode", version)
    return python


def write_venv(dest: Path, *, python: str, version: str, files: BaseFiles) -> None:
    """What ``<python> -m venv --without-pip /opt/kiln/venv`` writes, under ``dest``.

    ``python`` is the image path of the interpreter (as the Dockerfile invokes it),
    ``version`` its full version, ``files`` the filesystem it lives in.
    """
    minor = ".".join(version.split(".")[:2])
    numbers = tuple(int(part) for part in minor.split("."))
    venv = contract.VENV_DIR
    home, exe = posixpath.split(python)
    root = _host(dest, venv)
    bin_dir = root / "bin"
    include = root / "include" / f"python{minor}" if numbers >= (3, 11) else root / "include"
    for directory in (include, root / "lib" / f"python{minor}" / "site-packages", bin_dir):
        directory.mkdir(parents=True, exist_ok=True)
    (root / "lib64").symlink_to("lib")
    real = realpath(files, python)
    if real is None:
        raise BuildError(f"the base image has no interpreter at {python} (it was probed there)")
    lines = [f"home = {home}", "include-system-site-packages = false", f"version = {version}"]
    if numbers >= (3, 11):
        lines += [f"executable = {real}", f"command = {venv_command(python)}"]
    (root / "pyvenv.cfg").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (bin_dir / exe).symlink_to(python)
    for name in ("python", "python3", f"python{minor}"):
        if not (bin_dir / name).is_symlink():
            (bin_dir / name).symlink_to(exe)
    if numbers >= (3, 13):
        (root / ".gitignore").write_text(
            "# Created by venv; see https://docs.python.org/3/library/venv.html\n*\n"
        )
    _activation_scripts(bin_dir, real, minor, files)


def _activation_scripts(bin_dir: Path, interpreter: str, minor: str, files: BaseFiles) -> None:
    """bin/activate* from the base's own ``venv`` package, placeholders filled like its venv does."""
    stdlib = f"{posixpath.dirname(posixpath.dirname(interpreter))}/lib/python{minor}"
    venv = contract.VENV_DIR
    values = {
        "__VENV_DIR__": venv,
        "__VENV_NAME__": posixpath.basename(venv),
        "__VENV_PROMPT__": f"({posixpath.basename(venv)}) ",
        "__VENV_BIN_NAME__": "bin",
        "__VENV_PYTHON__": f"{venv}/bin/{posixpath.basename(interpreter)}",
    }
    found = 0
    for name in ("common/activate", "common/Activate.ps1", "posix/activate.csh", "posix/activate.fish"):
        data = files.read(f"{stdlib}/venv/scripts/{name}")
        if data is None:
            continue
        found += 1
        text = data.decode("utf-8")
        quote = _quoting(text, powershell=name.endswith(".ps1"))
        for key, value in values.items():
            text = text.replace(key, quote(value))
        (bin_dir / posixpath.basename(name)).write_text(text, encoding="utf-8")
    if not found:
        log.info("the base image has no venv activation scripts under %s/venv/scripts", stdlib)


def _quoting(template: str, *, powershell: bool) -> Callable[[str], str]:
    """How the base's venv fills placeholders: raw into templates that quote them themselves
    (``VIRTUAL_ENV="__VENV_DIR__"``), quoted for the shell into newer ones (gh-124651)."""
    if _QUOTED_PLACEHOLDER.search(template):
        return lambda value: value
    if powershell:
        return lambda value: "'" + value.replace("'", "''") + "'"
    return shlex.quote


def prune_tests(root: Path, site_packages: str) -> None:
    """Remove ``tests`` directories below site-packages by the Dockerfile's rule (``facts.is_pruned``)."""
    top = _host(root, site_packages)
    for current, dirnames, _filenames in os.walk(top):
        for name in list(dirnames):
            image_path = "/" + (Path(current) / name).relative_to(root).as_posix()
            if is_pruned(image_path):
                shutil.rmtree(Path(current) / name)
                dirnames.remove(name)


def _interpreter(spec: ImageSpec) -> str:
    if spec.build_python is None:
        raise BuildError(f"--env-manager {spec.env_manager} needs an interpreter to build on; none was found")
    return spec.build_python


def _scheme(spec: ImageSpec, files: BaseFiles) -> Scheme:
    """Where wheels go: the venv's, or the base interpreter's own (``--env-manager local``)."""
    minor = spec.python_version
    prefix = spec.prefix
    if prefix is not None:
        return Scheme(
            site_packages=spec.site_packages or f"{prefix}/lib/python{minor}/site-packages",
            scripts=f"{prefix}/bin",
            data=prefix,
            include=f"{prefix}/include/site/python{minor}",
            interpreter=f"{prefix}/bin/python",
        )
    return local_scheme(_interpreter(spec), minor, files)


def local_scheme(python: str, minor: str, files: BaseFiles) -> Scheme:
    """pip's default scheme for the base's interpreter, found from its files, not by running it.

    Debian's own python3 (prefix ``/usr``, with ``/usr/lib/python3/dist-packages``) installs
    into ``/usr/local/lib/pythonX.Y/dist-packages``; any other CPython into
    ``<prefix>/lib/pythonX.Y/site-packages``.
    """
    real = realpath(files, python)
    if real is None:
        raise BuildError(f"the base image has no interpreter at {python} for --env-manager local")
    prefix = posixpath.dirname(posixpath.dirname(real))
    if prefix == "/usr" and is_dir(files, "/usr/lib/python3/dist-packages"):
        return Scheme(
            site_packages=f"/usr/local/lib/python{minor}/dist-packages",
            scripts="/usr/local/bin",
            data="/usr/local",
            include=f"/usr/local/include/python{minor}",
            interpreter=python,
        )
    site = f"{prefix}/lib/python{minor}/site-packages"
    if not is_dir(files, f"{prefix}/lib/python{minor}"):
        raise BuildError(
            f"the base image's Python at {python} ({real}) has no standard library at "
            f"{prefix}/lib/python{minor}, so kiln cannot tell where --env-manager local installs",
            hint=DOCKER_HINT,
        )
    return Scheme(
        site_packages=site,
        scripts=f"{prefix}/bin",
        data=prefix,
        include=f"{prefix}/include/python{minor}",
        interpreter=python,
    )


def _host(root: Path, image_path: str) -> Path:
    return root / image_path.lstrip("/")
