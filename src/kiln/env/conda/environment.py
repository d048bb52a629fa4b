"""The conda environment file for the conda env manager: the model's, plus kiln's runtime in pip.

Conda channels cannot be resolved ahead of time here, so the file is not a lock: the
image build creates the environment from it. Its digest still labels the image.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kiln.env.cache import atomic_write
from kiln.env.lockfile import ensure_no_credentials

_PIP = re.compile(r"^pip(\s*[<>=!~].*)?$")
_PYTHON = re.compile(r"^python(\s*[<>=!~].*)?$")


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
