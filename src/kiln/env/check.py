"""Which of a model's requirements the running environment does not satisfy.

Used at container start by model-agnostic images, where the model is mounted and
was not part of the build. Runtime-safe: standard library, ``packaging`` and
``pyyaml`` only, Python 3.9+ (no uv, no pip, no rich).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kiln.env.accelerators import SAME_MODULE
from kiln.env.requirements import RequirementLine
from kiln.env.sources import read_model_environment
from kiln.model.info import read_model_info

# The full mlflow and mlflow-skinny ship the same ``mlflow`` package at the same version;
# serving needs only what skinny has, so an installed skinny satisfies ``mlflow==X``. The CPU and
# CUDA builds of accelerated packages (``kiln.env.accelerators``) stand in for each other the same way.
_SAME_PACKAGE = {"mlflow": ("mlflow", "mlflow-skinny"), **SAME_MODULE}


@dataclass(frozen=True)
class Unsatisfied:
    """A requirement the environment does not meet: missing, or installed at another version."""

    requirement: str
    origin: str
    installed: str | None
    """The installed version, or None when the package is missing."""

    def __str__(self) -> str:
        state = "not installed" if self.installed is None else f"installed: {self.installed}"
        return f"{self.requirement} ({self.origin}): {state}"


def installed_versions() -> dict[str, str]:
    """Canonical distribution name -> version, for the running interpreter (first on sys.path wins)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def unsatisfied_requirements(
    requirements: Iterable[RequirementLine], installed: Mapping[str, str] | None = None
) -> list[Unsatisfied]:
    """The requirements (markers evaluated here) that ``installed`` does not satisfy."""
    versions = installed_versions() if installed is None else installed
    problems: list[Unsatisfied] = []
    for line in requirements:
        requirement = line.requirement
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        present = [versions[n] for n in _SAME_PACKAGE.get(name, (name,)) if n in versions]
        if not present:
            problems.append(Unsatisfied(str(requirement), line.origin, None))
        elif not any(_satisfies(requirement.specifier, version) for version in present):
            problems.append(Unsatisfied(str(requirement), line.origin, present[0]))
    return problems


def check_model_requirements(
    model_dir: str | Path, installed: Mapping[str, str] | None = None
) -> list[Unsatisfied]:
    """The model's requirements (python_env.yaml, requirements.txt or conda.yaml) not met here."""
    environment = read_model_environment(read_model_info(model_dir))
    return unsatisfied_requirements(environment.requirements.requirements, installed)


def _satisfies(specifier: SpecifierSet, version: str) -> bool:
    try:
        return specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False
