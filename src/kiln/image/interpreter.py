"""Fetch a relocatable CPython build with uv on the host, for a base image that lacks the right Python.

The interpreter is downloaded on the host (where the network and its proxies are
configured) and copied into the image: the image build itself never downloads or
compiles CPython.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from kiln.errors import DependencyError

log = logging.getLogger(__name__)

_ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm64/v8": "aarch64"}


def uv_python_key(version: str, os_arch: str) -> str:
    """uv's download key, e.g. ``cpython-3.12-linux-x86_64-gnu``."""
    arch = _ARCH.get(os_arch)
    if arch is None:
        raise DependencyError(
            f"no Python builds are known for platform {os_arch!r} "
            f"(expected one of {', '.join(sorted(_ARCH))})"
        )
    return f"cpython-{version}-linux-{arch}-gnu"


def fetch_python(version: str, os_arch: str, dest: Path, *, reason: str) -> Path:
    """Install CPython ``version`` for ``os_arch`` into ``dest`` (its ``bin/python3`` runs in the image).

    ``reason`` says why (the base image's Python and the one needed); it leads the
    error message when uv cannot download the interpreter.
    """
    from uv import find_uv_bin

    key = uv_python_key(version, os_arch)
    with tempfile.TemporaryDirectory(prefix="kiln-python-") as tmp:
        env = dict(os.environ, UV_PYTHON_INSTALL_DIR=tmp, UV_PYTHON_DOWNLOADS="automatic")
        command = [find_uv_bin(), "python", "install", "--no-bin", "--no-registry", key]
        log.info("fetching Python %s (%s) with uv", version, key)
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
            raise DependencyError(
                f"{reason}; kiln tried to download Python {version} ({key}) with uv and could not",
                hint=f"use a base image that has Python {version} (e.g. --base-image python:{version}-slim), "
                "or set UV_PYTHON_INSTALL_MIRROR to a reachable mirror of python-build-standalone. "
                f"uv said: {tail}",
            )
        installs = [p for p in Path(tmp).iterdir() if p.is_dir() and p.name.startswith("cpython-")]
        if len(installs) != 1:
            raise DependencyError(f"uv installed {len(installs)} Pythons for {key} into {tmp} (expected 1)")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(installs[0]), dest)
    if not (dest / "bin" / "python3").exists():
        raise DependencyError(f"the Python uv installed for {key} has no bin/python3 (in {dest})")
    return dest
