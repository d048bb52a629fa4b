"""Lock a conda environment's ``pip:`` section with uv, for the environment's own Python, with hashes.

It is the same lock the other env managers use (``kiln.env.locking``: the host's pip indexes
and constraints, cached by its inputs), with one addition: the Python packages the conda
solve already installs are pinned as constraints (``numpy==<conda's version>``), so pip's
side agrees with conda's, and are then left out of the pip lock, so pip never replaces a
conda package. A conda package counts as a Python package when its name and version are
valid PyPI ones; packages whose conda and PyPI names differ (``pytorch``/``torch``) are
not matched and pip installs its own copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kiln.env.lockfile import parse_lock
from kiln.env.locking import LockRequest, compile_lock
from kiln.env.spec import TargetPlatform

if TYPE_CHECKING:
    from kiln.env.conda.lock import CondaPackage

_NOT_PYPI = frozenset({"python", "pip"})


def lock_pip_section(
    lines: Sequence[str],
    *,
    runtime: Sequence[str],
    packages: Sequence[CondaPackage],
    target: TargetPlatform,
    cache_dir: Path,
) -> str:
    """The hashed pip lock of ``lines`` (``runtime`` among them marks kiln's) minus what conda has."""
    provided = _python_packages(packages)
    runtime_set = set(runtime)
    request = LockRequest(
        target=target,
        requirements=tuple(line for line in lines if line not in runtime_set),
        runtime=tuple(line for line in lines if line in runtime_set),
        constraints=tuple(f"{name}=={version}" for name, version in sorted(provided.items())),
        label="model",
    )
    text, _cached = compile_lock(request, cache_dir=cache_dir)
    kept = drop_entries(text, {name for name, version in provided.items()})
    parse_lock(kept)  # every remaining entry pinned with hashes, or a DependencyError
    return kept


def drop_entries(text: str, names: set[str]) -> str:
    """The lock ``text`` without the entries (with their hash and comment lines) of ``names``."""
    out: list[str] = []
    dropping = False
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name = canonicalize_name(line.split("==", 1)[0].split(" ", 1)[0].split("[", 1)[0])
            dropping = name in names
        elif line and not line[0].isspace():
            dropping = False
        if not dropping:
            out.append(line)
    return "\n".join(out) + "\n" if out else ""


def _python_packages(packages: Sequence[CondaPackage]) -> dict[str, str]:
    provided: dict[str, str] = {}
    for package in packages:
        name = canonicalize_name(package.name)
        if name in _NOT_PYPI:
            continue
        try:
            Version(package.version)
        except InvalidVersion:
            continue
        provided[name] = package.version
    return provided
