"""resolve_env paths that need no index: refusals before any resolution (conda: tests/env/conda)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kiln.env.resolve import resolve_env
from kiln.env.spec import TargetPlatform
from kiln.errors import DependencyError, UsageError
from kiln.model.info import read_model_info

AMD64 = TargetPlatform("3.11", "linux/amd64", "2.36")


def test_requirements_file_escaping_its_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))
    reqs = tmp_path / "project" / "requirements.txt"
    reqs.parent.mkdir()
    reqs.write_text("scikit-learn\n-r ../../etc/passwd\n", encoding="utf-8")
    with pytest.raises(DependencyError) as info:
        resolve_env(
            None, env_manager="virtualenv", target=AMD64, work_dir=tmp_path / "ctx", requirements_files=[reqs]
        )
    assert "'-r ../../etc/passwd'" in info.value.message
    assert "outside" in info.value.message
    assert not (tmp_path / "cache").exists()  # refused before anything was resolved


def test_bad_target_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="linux/s390x"):
        resolve_env(
            None, env_manager="virtualenv", target=TargetPlatform("3.11", "linux/s390x"), work_dir=tmp_path
        )


def test_conda_refuses_mlflow_home(
    model_dir: Callable[[str], Path], tmp_path: Path, kiln_cache: Path
) -> None:
    model = read_model_info(model_dir("sklearn_iris"))
    with pytest.raises(UsageError, match="--mlflow-home is not supported with --env-manager conda"):
        resolve_env(model, env_manager="conda", target=AMD64, work_dir=tmp_path, mlflow_home=tmp_path)
