"""Real manylinux wheels from the configured indexes, downloaded once with the host's pip and kept."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
WHEELS = REPO / ".cache" / "tests" / "native-wheels"
# lightgbm links OpenMP from the system (libgomp.so.1); numpy vendors OpenBLAS and gfortran in numpy.libs/.
LIGHTGBM = "lightgbm==4.7.0"
NUMPY = "numpy==2.4.6"
HERE = Path(__file__).parent


def fixture_lines(name: str) -> tuple[str, ...]:
    text = (HERE / name).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line.strip() and not line.startswith("#"))


# What a python:3.11-slim (bookworm) base has, read from the real image (see each file's header).
SLIM_BASE_FILES = fixture_lines("slim-base-libraries.txt")
SLIM_BASE_PACKAGES = fixture_lines("slim-base-packages.txt")


def download_wheel(requirement: str) -> Path:
    """The manylinux x86_64 CPython 3.11 wheel of ``requirement``, from the host's pip configuration."""
    name = requirement.split("==")[0]
    directory = WHEELS / requirement
    found = sorted(directory.glob(f"{name}-*.whl"))
    if found:
        return found[0]
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"),
        *("--python-version", "3.11", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64"),
        *("--dest", str(directory), "--quiet", requirement),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return sorted(directory.glob(f"{name}-*.whl"))[0]


@pytest.fixture(scope="session")
def wheel() -> Callable[[str], Path]:
    return download_wheel
