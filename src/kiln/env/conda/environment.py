"""The model's conda environment file: read it (channels, conda specs, the ``pip:`` section), and
write the file kiln ships, the model's with kiln's runtime added to its pip section."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kiln.env.cache import atomic_write
from kiln.env.lockfile import ensure_no_credentials
from kiln.env.redact import redact
from kiln.errors import DependencyError

_PIP = re.compile(r"^pip(\s*[<>=!~].*)?$")
_PYTHON = re.compile(r"^python(\s*[<>=!~].*)?$")


@dataclass(frozen=True)
class CondaEnvironment:
    """What a conda environment file asks for."""

    channels: tuple[str, ...]
    """As written: names (``conda-forge``), ``defaults`` or URLs (which may carry credentials)."""
    specs: tuple[str, ...]
    """Conda match specs (``python=3.11``, ``numpy>=1.26``, ``conda-forge::scipy``)."""
    pip: tuple[str, ...]
    """The ``pip:`` section's requirement lines."""
    origin: str = "conda.yaml"
    """Where it was read from, for messages."""


def parse_conda_environment(data: object, *, origin: str) -> CondaEnvironment:
    """The environment in ``data`` (a parsed YAML document); DependencyError when it is not one."""
    if not isinstance(data, dict):
        raise DependencyError(
            f"{origin} is not a conda environment: expected a mapping with 'channels' and "
            f"'dependencies', got {_kind(data)}",
            hint="a conda environment file looks like 'channels: [conda-forge]' and "
            "'dependencies: [python=3.11, pip, {pip: [mlflow]}]'",
        )
    channels = _strings(data.get("channels") or [], f"{origin}: 'channels'")
    specs: list[str] = []
    pip: list[str] = []
    dependencies = data.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise DependencyError(f"{origin}: 'dependencies' must be a list, got {_kind(dependencies)}")
    for item in dependencies:
        if isinstance(item, dict) and set(item) == {"pip"}:
            pip += _strings(item["pip"] or [], f"{origin}: the 'pip' section")
        elif isinstance(item, (str, int, float)) and str(item).strip():
            specs.append(str(item).strip())
        else:
            raise DependencyError(
                f"{origin}: dependency {redact(repr(item))} is neither a conda spec nor a 'pip:' section"
            )
    return CondaEnvironment(tuple(channels), tuple(specs), tuple(pip), origin)


def read_conda_environment(path: Path) -> CondaEnvironment:
    """Parse the conda environment file at ``path``."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DependencyError(f"cannot read the conda environment file {str(path)!r}: {exc}") from exc
    return parse_conda_environment(data, origin=str(path))


def conda_environment(
    base: dict[str, Any] | None, *, pip_requirements: Sequence[str], python_version: str
) -> dict[str, Any]:
    """``base`` (the model's conda.yaml, or a minimal one) with its pip section replaced."""
    env = copy.deepcopy(base) if base else {"name": "kiln", "channels": ["conda-forge"]}
    dependencies = [item for item in env.get("dependencies") or [] if not _is_pip_section(item)]
    if not any(isinstance(item, str) and _PYTHON.match(item.strip()) for item in dependencies):
        dependencies.insert(0, f"python={python_version}")
    if not any(isinstance(item, str) and _PIP.match(item.strip()) for item in dependencies):
        dependencies.append("pip")
    dependencies.append({"pip": list(pip_requirements)})
    env["dependencies"] = dependencies
    return env


def write_conda_file(environment: dict[str, Any], path: Path) -> bytes:
    """Write ``environment`` as YAML to ``path``; return the bytes written."""
    text = yaml.safe_dump(environment, sort_keys=False, default_flow_style=False)
    ensure_no_credentials(text, "the conda environment file")
    data = text.encode("utf-8")
    atomic_write(path, data)
    return data


def _is_pip_section(item: object) -> bool:
    return isinstance(item, dict) and "pip" in item


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, (str, int, float)) for item in value):
        raise DependencyError(f"{what} must be a list of strings, got {redact(repr(value))}")
    return [str(item).strip() for item in value if str(item).strip()]


def _kind(value: object) -> str:
    if value is None:
        return "an empty document"
    return f"a {type(value).__name__} ({redact(repr(value))[:60]})"
