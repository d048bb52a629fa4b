"""Inputs for rendering tests: a hand-written MLmodel, EnvSpecs and base images built by hand."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.docker_support import docker_builder  # noqa: F401

from kiln.env.conda import CondaLock, CondaPackage, PreparedCondaEnvironment
from kiln.env.spec import EnvSpec, TargetPlatform
from kiln.image.probe import BaseImageInfo
from kiln.model.info import ModelInfo, read_model_info

UPDATE_GOLDEN = os.environ.get("KILN_UPDATE_GOLDEN", "").lower() in ("1", "true", "yes")
"""``KILN_UPDATE_GOLDEN=1 pytest tests/image`` rewrites the golden files from the current output."""

GOLDEN = Path(__file__).parent / "golden"

MLMODEL = """\
artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    python_version: 3.11.7
  sklearn:
    pickled_model: model.pkl
    sklearn_version: 1.5.0
mlflow_version: 2.14.0
run_id: 0123456789abcdef
signature:
  inputs: '[{"type": "double", "name": "x", "required": true}]'
  outputs: '[{"type": "long", "required": true}]'
  params: null
"""

LOCK = """\
# kiln lock for CPython 3.11 on x86_64-manylinux_2_36.
--index-url https://user:kiln-golden-token@pypi.example.com/simple
numpy==2.0.0 \\
    --hash=sha256:aaaa
scikit-learn==1.5.0 \\
    --hash=sha256:bbbb
"""


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with ``golden/<name>`` (or rewrite it when KILN_UPDATE_GOLDEN is set)."""
    path = GOLDEN / name
    if UPDATE_GOLDEN or not path.exists():
        path.write_text(text, encoding="utf-8")
        if not UPDATE_GOLDEN:
            pytest.fail(f"golden file {path} did not exist; written now: review and commit it")
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file; KILN_UPDATE_GOLDEN=1 rewrites it"


@pytest.fixture
def model(tmp_path: Path) -> ModelInfo:
    root = tmp_path / "iris_model"
    root.mkdir()
    (root / "MLmodel").write_text(MLMODEL)
    (root / "python_env.yaml").write_text("python: 3.11.7\ndependencies:\n- -r requirements.txt\n")
    (root / "requirements.txt").write_text("mlflow==2.14.0\nscikit-learn==1.5.0\n")
    (root / "model.pkl").write_bytes(b"weights")
    return read_model_info(root)


MakeEnv = Callable[..., EnvSpec]


@pytest.fixture
def make_env(tmp_path: Path) -> MakeEnv:
    """``make_env("uv")``: an EnvSpec with real (tiny) files, as kiln.env would write them."""
    work = tmp_path / "env"
    (work / "wheelhouse").mkdir(parents=True)
    (work / "wheelhouse" / "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"w")
    (work / "installer").mkdir()
    (work / "kiln").mkdir()
    lock = work / "requirements.lock"
    lock.write_text(LOCK)
    kiln_wheel = work / "kiln" / "kiln-0.1.0-py3-none-any.whl"
    kiln_wheel.write_bytes(b"kiln")
    pip_wheel = work / "installer" / "pip-24.2-py3-none-any.whl"
    pip_wheel.write_bytes(b"pip")
    uv_wheel = work / "installer" / "uv-0.5.0-py3-none-manylinux_2_17_x86_64.whl"
    uv_wheel.write_bytes(b"uv")
    conda = _prepared_conda(work / "conda")

    def make(env_manager: str, **changes: object) -> EnvSpec:
        target = TargetPlatform(python_version="3.11")
        fields: dict[str, object] = dict(
            env_manager=env_manager,
            target=target,
            requirements=("mlflow-skinny==2.14.0", "scikit-learn==1.5.0"),
            lock_file=lock,
            lock_digest="sha256:from-kiln-env",
            wheelhouse=work / "wheelhouse",
            kiln_wheel=kiln_wheel,
            installer_wheel={"uv": uv_wheel, "virtualenv": pip_wheel, "local": pip_wheel}.get(env_manager),
            notes=("mlflow==2.14.0 -> mlflow-skinny==2.14.0",),
        )
        if env_manager == "conda":
            fields.update(lock_file=None, wheelhouse=None, conda=conda, lock_digest=conda.digest)
        fields.update(changes)
        return EnvSpec(**fields)  # type: ignore[arg-type]

    return make


def _prepared_conda(work: Path) -> PreparedCondaEnvironment:
    """What kiln.env.conda.prepare_conda_environment writes, without a channel: the locks and folders."""
    python = CondaPackage(
        "python", "3.11.2", "h0_kiln", "linux-64", "python-3.11.2-h0_kiln.tar.bz2",
        "https://conda.example.com/kiln/linux-64/python-3.11.2-h0_kiln.tar.bz2",
        "https://conda.example.com/kiln", "0" * 64,
    )  # fmt: skip
    lock = CondaLock("linux-64", ("https://conda.example.com/kiln",), ("python 3.11.*", "pip"), (python,))
    lock = dataclasses.replace(lock, pip_lock=LOCK)
    (work / "conda-pkgs").mkdir(parents=True)
    (work / "conda-wheelhouse").mkdir()
    (work / "conda.lock").write_text(lock.explicit())
    (work / "conda-pip.lock").write_text(LOCK)
    return PreparedCondaEnvironment(
        lock, work / "conda.lock", work / "conda-pkgs", work / "conda-pip.lock", work / "conda-wheelhouse",
        TargetPlatform(python_version="3.11"),
    )  # fmt: skip


def python_slim(**changes: object) -> BaseImageInfo:
    """What the probe finds in kiln-test/python:3.11-slim (and python:3.11-slim)."""
    fields: dict[str, object] = dict(
        image="python:3.11-slim",
        image_id="sha256:1111",
        os_arch="linux/amd64",
        python="/usr/local/bin/python3",
        python_version="3.11.2",
        glibc="2.36",
        has_nginx=False,
        has_apt=True,
        pip_version=None,
        os_release="debian:12",
    )
    fields.update(changes)
    return BaseImageInfo(**fields)  # type: ignore[arg-type]
