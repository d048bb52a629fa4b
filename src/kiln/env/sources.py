"""Read a model's environment files: python_env.yaml, requirements.txt, conda.yaml.

Runtime-safe: used by ``kiln.env.check`` inside model-agnostic images; standard
library, ``packaging`` and ``pyyaml`` only, Python 3.9+.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kiln.env.requirements import ParsedRequirements, parse_requirement_lines, read_requirements_file
from kiln.errors import DependencyError, ModelError
from kiln.model.info import ModelInfo

_CONDA_PYTHON = re.compile(r"^python\s*(?:==|=|>=|~=)?\s*(\d+\.\d+(?:\.[\w*]+)?)\s*$")


@dataclass(frozen=True)
class ModelEnvironment:
    """What a model says it needs, before kiln adds its runtime or swaps mlflow."""

    source: str
    """The file the requirements came from: ``python_env.yaml``, ``requirements.txt`` or ``conda.yaml``."""
    requirements: ParsedRequirements
    python_version: str | None = None
    """As written by the model (``3.11.7``), if it says."""
    build_dependencies: tuple[str, ...] = ()
    """python_env.yaml's ``build_dependencies`` (``pip==24.0``, ``setuptools``, ...)."""
    conda: dict[str, Any] | None = field(default=None, compare=False)
    """The parsed conda.yaml, when the model has one."""


def read_model_environment(info: ModelInfo, *, prefer_conda: bool = False) -> ModelEnvironment:
    """The model's environment: python_env.yaml, else requirements.txt, else conda.yaml's pip section.

    With ``prefer_conda`` (the conda env manager) conda.yaml comes first. Each of these
    files must be inside the model directory (see ``model_file``).
    """
    root = info.path
    conda_path = model_file(root, info.conda_env_file, "conda environment file")
    conda = _read_yaml(conda_path) if conda_path is not None and conda_path.is_file() else None
    if prefer_conda and conda is not None:
        return _from_conda(conda, root=root, name=info.conda_env_file or "conda.yaml")
    python_env_path = model_file(root, info.python_env_file, "virtualenv environment file")
    if python_env_path is not None and python_env_path.is_file():
        return _from_python_env(_read_yaml(python_env_path), python_env_path, root=root, conda=conda)
    requirements_path = model_file(root, "requirements.txt", "requirements file")
    if requirements_path is not None and requirements_path.is_file():
        return ModelEnvironment(
            source="requirements.txt",
            requirements=read_requirements_file(requirements_path, root=root),
            python_version=info.python_version,
            conda=conda,
        )
    if conda is not None:
        return _from_conda(conda, root=root, name=info.conda_env_file or "conda.yaml")
    raise DependencyError(
        f"model {str(root)!r} has no python_env.yaml, requirements.txt or conda.yaml: "
        "kiln cannot tell which packages it needs",
        hint="save the model with a recent MLflow, which writes requirements.txt, "
        "or pass --requirements FILE",
    )


def model_file(root: Path, name: str | None, what: str) -> Path | None:
    """``root/name`` for a file the model names; refused unless it stays inside ``root``.

    A model directory is untrusted input: MLmodel could name ``/etc/...`` or ``../..``
    as an environment file, or the file could be a symlink out of the model. Either
    would make kiln read a file that is not part of the model.
    """
    if not name:
        return None
    if os.path.isabs(name) or name.startswith("~"):
        raise ModelError(
            f"model {str(root)!r} names its {what} by the absolute path {name!r}; "
            "expected a path relative to the model directory"
        )
    path = root / name
    try:
        resolved, inside = path.resolve(), root.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ModelError(f"model {str(root)!r}: cannot resolve its {what} {name!r}: {exc}") from exc
    if resolved != inside and inside not in resolved.parents:
        raise ModelError(
            f"model {str(root)!r}: its {what} {name!r} resolves to {str(resolved)!r}, outside the model "
            "directory (through '..' or a symlink)",
            hint="keep the model's environment files inside its directory",
        )
    return path


def conda_pip_section(conda: dict[str, Any]) -> list[str] | None:
    """The ``pip:`` list of a conda environment, or None when it has none."""
    for item in conda.get("dependencies") or []:
        if isinstance(item, dict) and "pip" in item:
            pip = item["pip"] or []
            if not isinstance(pip, list):
                raise DependencyError(f"conda environment's pip section is not a list: {pip!r}")
            return [str(line) for line in pip]
    return None


def conda_python_version(conda: dict[str, Any]) -> str | None:
    """``3.11.7`` from a ``python=3.11.7`` dependency, if there is one."""
    for item in conda.get("dependencies") or []:
        if isinstance(item, str):
            match = _CONDA_PYTHON.match(item.strip())
            if match:
                return match.group(1)
    return None


def _from_python_env(
    data: dict[str, Any], path: Path, *, root: Path, conda: dict[str, Any] | None
) -> ModelEnvironment:
    dependencies = _string_list(data.get("dependencies"), f"{path.name}: dependencies")
    build = _string_list(data.get("build_dependencies"), f"{path.name}: build_dependencies")
    python = data.get("python")
    return ModelEnvironment(
        source=path.name,
        requirements=parse_requirement_lines(dependencies, origin=path.name, root=root),
        python_version=None if python is None else str(python),
        build_dependencies=tuple(build),
        conda=conda,
    )


def _from_conda(conda: dict[str, Any], *, root: Path, name: str) -> ModelEnvironment:
    pip = conda_pip_section(conda) or []
    return ModelEnvironment(
        source=name,
        requirements=parse_requirement_lines(pip, origin=f"{name} (pip)", root=root),
        python_version=conda_python_version(conda),
        conda=conda,
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DependencyError(f"cannot read {str(path)!r}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DependencyError(f"{str(path)!r} is not a YAML mapping (got {type(data).__name__})")
    return data


def _string_list(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DependencyError(f"{what} is not a list: {value!r}")
    return [str(item) for item in value]
