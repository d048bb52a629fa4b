"""Which base image and which Python: from the model's python_env.yaml, the user's choice and the probe."""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass

import yaml

from kiln.contract import EnvManager
from kiln.env.sources import model_file
from kiln.errors import BuildError, ModelError
from kiln.image.probe import BaseImageInfo
from kiln.model.info import ModelInfo

log = logging.getLogger(__name__)

CONDA_DEFAULT_BASE = "debian:bookworm-slim"
"""The conda environment brings its own Python, so its default base needs none."""

_MINOR = re.compile(r"^\s*(\d+)\.(\d+)")


def python_minor(version: str) -> str:
    """``3.11`` for ``3.11.7``, ``3.11`` or ``3.11.*``; ModelError for anything else."""
    match = _MINOR.match(version)
    if not match:
        raise ModelError(f"Python version {version!r} is not a version (expected e.g. 3.11 or 3.11.7)")
    return f"{match.group(1)}.{match.group(2)}"


def requested_python(model: ModelInfo | None) -> str | None:
    """The model's Python as ``X.Y``: ``python`` in python_env.yaml, else MLmodel's python_version."""
    if model is None:
        return None
    # The model is untrusted: its python_env.yaml must stay inside it (no absolute path, '..', symlink out).
    env_file = model_file(model.path, model.python_env_file, "python_env file")
    if env_file is not None and env_file.is_file():
        try:
            data = yaml.safe_load(env_file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ModelError(f"{str(env_file)!r} is not valid YAML: {exc}") from exc
        if isinstance(data, dict) and data.get("python"):
            return python_minor(str(data["python"]))
    if model.python_version:
        return python_minor(model.python_version)
    return None


def default_base_image(env_manager: EnvManager, minor: str | None) -> str:
    """``python:X.Y-slim`` for the model's Python (the running Python's without a model)."""
    if env_manager == "conda":
        return CONDA_DEFAULT_BASE
    if minor is None:
        minor = f"{sys.version_info.major}.{sys.version_info.minor}"
        log.info("no model Python version known: using the running Python's, %s", minor)
    return f"python:{minor}-slim"


@dataclass(frozen=True)
class PythonPlan:
    """Which interpreter the image's environment is built on."""

    version: str
    """``X.Y`` the environment is resolved and installed for."""
    interpreter: str | None
    """Path in the image of the interpreter to build on; None when kiln brings its own (bundled)."""
    bundled: bool = False
    """True when the base lacks Python ``version`` and a relocatable build is copied in."""


def plan_python(env_manager: EnvManager, requested: str | None, base: BaseImageInfo) -> PythonPlan:
    """Choose the interpreter: the base's when it matches, another of its pythons, or a bundled one."""
    if env_manager == "conda":
        # conda.yaml pins its own python; the base image's is irrelevant.
        return PythonPlan(version=requested or base.python_minor or "3.11", interpreter=None)
    if env_manager == "local":
        if base.python is None or base.python_minor is None:
            raise BuildError(
                f"base image {base.image!r} has no python3 or python on PATH, which "
                "--env-manager local needs (it installs into the base image's own Python)",
                hint="use --env-manager virtualenv or a base image with Python",
            )
        if requested and requested != base.python_minor:
            log.warning(
                "the model wants Python %s but --env-manager local uses the base image's Python %s (%s)",
                requested,
                base.python_minor,
                base.image,
            )
        return PythonPlan(version=base.python_minor, interpreter=base.python)
    version = requested or base.python_minor
    if version is None:
        return PythonPlan(
            version=f"{sys.version_info.major}.{sys.version_info.minor}", interpreter=None, bundled=True
        )
    found = base.interpreter_for(version)
    if found:
        return PythonPlan(version=version, interpreter=found)
    return PythonPlan(version=version, interpreter=None, bundled=True)


def describe_mismatch(base: BaseImageInfo, version: str) -> str:
    have = f"Python {base.python_version}" if base.python_version else "no Python"
    return f"base image {base.image!r} has {have}, but the environment needs Python {version}"
