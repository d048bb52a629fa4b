"""resolve_env paths that need no index: refusals before any resolution, and conda."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kiln.contract import RUNTIME_REQUIREMENTS
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


def test_conda_writes_the_models_environment_with_kilns_runtime(
    model_dir: Callable[[str], Path], tmp_path: Path, kiln_cache: Path
) -> None:
    model = read_model_info(model_dir("sklearn_iris"))
    messages: list[str] = []
    spec = resolve_env(model, env_manager="conda", target=AMD64, work_dir=tmp_path, progress=messages.append)
    assert spec.lock_file is None and spec.wheelhouse is None and spec.installer_wheel is None
    assert spec.conda_file == tmp_path / "conda.yaml"
    data = spec.conda_file.read_bytes()
    assert spec.lock_digest == "sha256:" + hashlib.sha256(data).hexdigest()
    env = yaml.safe_load(data)
    original = yaml.safe_load((model.path / "conda.yaml").read_text())
    assert env["channels"] == original["channels"]
    assert env["dependencies"][0] == "python=3.11.7"
    strings = [d for d in original["dependencies"] if isinstance(d, str)]
    assert [d for d in env["dependencies"] if isinstance(d, str)] == strings  # python and pip, as saved
    (pip,) = [item["pip"] for item in env["dependencies"] if isinstance(item, dict)]
    assert "mlflow-skinny==3.17.2" in pip and "mlflow==3.17.2" not in pip
    assert "scikit-learn==1.9.1" in pip
    assert set(RUNTIME_REQUIREMENTS) <= set(pip)
    assert spec.kiln_wheel.is_file() and spec.kiln_wheel_digest
    assert any("conda" in note and "not locked" in note for note in spec.notes)
    assert any("mlflow-skinny" in note for note in spec.notes)
    assert any("conda.yaml" in message for message in messages)


def test_conda_refuses_mlflow_home(
    model_dir: Callable[[str], Path], tmp_path: Path, kiln_cache: Path
) -> None:
    model = read_model_info(model_dir("sklearn_iris"))
    with pytest.raises(UsageError, match="--mlflow-home is not supported with --env-manager conda"):
        resolve_env(model, env_manager="conda", target=AMD64, work_dir=tmp_path, mlflow_home=tmp_path)


def test_a_conda_run_clears_what_a_locked_run_left(
    model_dir: Callable[[str], Path], tmp_path: Path, kiln_cache: Path
) -> None:
    (tmp_path / "requirements.lock").write_text("stale\n")
    (tmp_path / "wheelhouse").mkdir()
    (tmp_path / "wheelhouse" / "stale-1.0-py3-none-any.whl").write_text("stale")
    resolve_env(
        read_model_info(model_dir("sklearn_iris")), env_manager="conda", target=AMD64, work_dir=tmp_path
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conda.yaml", "kiln"]
