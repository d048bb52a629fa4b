"""Models logged from a uv project: the image's environment follows the model's uv.lock."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kiln.env.lockfile import parse_lock
from kiln.env.resolve import resolve_env
from kiln.env.spec import TargetPlatform
from kiln.env.tools import uv_binary
from kiln.env.uvproject import uv_project_requirements
from kiln.errors import DependencyError
from kiln.model.info import read_model_info

AMD64 = TargetPlatform("3.11", "linux/amd64", "2.36")
PYPROJECT = """\
[project]
name = "churn-model"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["scikit-learn==1.5.2", "packaging==24.1"]

[dependency-groups]
dev = ["pytest==8.3.3"]
"""


@pytest.fixture
def uv_model(model_dir: Callable[[str], Path], tmp_path: Path) -> Path:
    """The sklearn_iris fixture as MLflow 3 saves it from a uv project: with uv.lock and pyproject.toml."""
    model = tmp_path / "model"
    shutil.copytree(model_dir("sklearn_iris"), model)
    (model / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    subprocess.run([uv_binary(), "lock", "--quiet"], cwd=model, check=True, capture_output=True, timeout=300)
    return model


def test_a_models_uv_lock_is_exported_as_exact_pins(uv_model: Path) -> None:
    project = uv_project_requirements(uv_model)
    assert project is not None
    pins = {line.name: str(line.requirement.specifier) for line in project.requirements.requirements}
    assert pins["scikit-learn"] == "==1.5.2" and pins["packaging"] == "==24.1"
    assert all(spec.startswith("==") for spec in pins.values())
    assert "pytest" not in pins and "churn-model" not in pins  # no dev group, not the project itself
    assert "follows the model's uv.lock" in project.note


def test_a_model_without_a_uv_project_uses_its_requirements(model_dir: Callable[[str], Path]) -> None:
    assert uv_project_requirements(model_dir("sklearn_iris")) is None


def test_an_unreadable_uv_lock_is_a_clear_error(uv_model: Path) -> None:
    (uv_model / "uv.lock").write_text("this is not a lock\n", encoding="utf-8")
    with pytest.raises(DependencyError, match=r"carries a uv\.lock that 'uv export --frozen' cannot read"):
        uv_project_requirements(uv_model)


@pytest.mark.slow
def test_the_image_environment_follows_the_uv_lock(uv_model: Path, tmp_path: Path, kiln_cache: Path) -> None:
    spec = resolve_env(
        read_model_info(uv_model), env_manager="virtualenv", target=AMD64, work_dir=tmp_path / "env"
    )
    locked = {e.name: e.version for e in parse_lock(spec.lock_file.read_text())}  # type: ignore[union-attr]
    assert locked["scikit-learn"] == "1.5.2" and locked["packaging"] == "24.1"
    assert any("follows the model's uv.lock" in note for note in spec.notes)
