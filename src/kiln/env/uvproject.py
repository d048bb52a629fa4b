"""A model logged from a uv project: MLflow 3 saves its ``uv.lock`` and ``pyproject.toml`` beside
``MLmodel``, and the image's environment then follows that lock rather than ``requirements.txt``.

``uv export --frozen`` turns the lock into exact pins (with the lock's environment markers, so
the pins for the image's Python and platform are the ones that apply); kiln then locks those pins
for the image's platform with hashes like any other requirements, which also checks that every
pinned version has a wheel for that platform. The project itself and its development
dependencies are left out, as MLflow does.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kiln.env.requirements import ParsedRequirements, parse_requirement_lines
from kiln.env.sources import model_file
from kiln.env.tools import run, tail, uv_binary
from kiln.errors import DependencyError

UV_LOCK = "uv.lock"
PYPROJECT = "pyproject.toml"
PYTHON_VERSION = ".python-version"


@dataclass(frozen=True)
class UvProject:
    """The pins a model's uv.lock gives, and how many."""

    requirements: ParsedRequirements
    note: str


def uv_project_requirements(model_dir: Path) -> UvProject | None:
    """The model's uv.lock exported as pinned requirements; None when the model has no uv project.

    DependencyError when the lock cannot be exported (out of date with pyproject.toml, unreadable),
    with uv's own words: the model then says one thing and kiln would install another.
    """
    lock = model_file(model_dir, UV_LOCK, "uv lock")
    pyproject = model_file(model_dir, PYPROJECT, "uv project file")
    if lock is None or pyproject is None or not lock.is_file() or not pyproject.is_file():
        return None
    with tempfile.TemporaryDirectory(prefix="kiln-uv-project-") as scratch:
        project = Path(scratch)
        for name in (UV_LOCK, PYPROJECT, PYTHON_VERSION):
            source = model_file(model_dir, name, "uv project file")
            if source is not None and source.is_file():
                shutil.copyfile(source, project / name)
        result = run(
            [
                uv_binary(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes",
                "--no-header", "--no-annotate", "--format", "requirements-txt",
            ],
            what="uv export",
            cwd=project,
        )  # fmt: skip
        if result.returncode != 0:
            raise DependencyError(
                f"model {str(model_dir)!r} carries a uv.lock that 'uv export --frozen' cannot read:\n"
                + tail(result.stderr or result.stdout),
                hint="run 'uv lock' in the project and log the model again, or remove uv.lock and "
                "pyproject.toml from the model to build from its requirements.txt",
            )
        lines = [line for line in result.stdout.splitlines() if line.strip() and not line.startswith("#")]
        parsed = parse_requirement_lines(lines, origin=f"{model_dir}/{UV_LOCK}", root=project)
    count = len(parsed.requirements)
    note = (
        f"the environment follows the model's uv.lock ({count} pinned packages from "
        "'uv export --frozen'); its requirements.txt is not used"
    )
    return UvProject(parsed, note)
