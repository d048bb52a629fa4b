"""resolve_env(env_manager="conda"): the model's conda.yaml solved, locked and fetched on the host, with
MLflow settled and kiln's runtime in the pip section; then the OCI backend's environment layer from it,
the same bytes twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln import contract
from kiln.env.conda import installed_environment
from kiln.env.resolve import resolve_env
from kiln.env.spec import EnvSpec, TargetPlatform
from kiln.image import facts
from kiln.image.base import plan_python
from kiln.image.layers.build import tree_digest
from kiln.image.layers.conda import install_conda_layer
from kiln.image.spec import ImageOptions, build_image_spec
from kiln.model.info import ModelInfo, read_model_info
from tests.conda_channel.models import save_conda_model
from tests.conda_channel.serve import ChannelServer
from tests.image.conftest import python_slim

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

AMD64 = TargetPlatform("3.11", "linux/amd64", "2.36")


@pytest.fixture(scope="module")
def model(conda_channel: ChannelServer, tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    root = tmp_path_factory.mktemp("conda-resolve")
    return read_model_info(save_conda_model(root / "iris", conda_channel.url))


@pytest.fixture(scope="module")
def resolved(model: ModelInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvSpec]:
    cache = tmp_path_factory.mktemp("kiln-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KILN_CACHE_DIR", str(cache))
        (cache / "condarc").write_text("{}\n")
        patch.setenv("CONDARC", str(cache / "condarc"))
        work = tmp_path_factory.mktemp("work")
        (work / "requirements.lock").write_text("stale\n")  # what an earlier virtualenv run left
        (work / "wheelhouse").mkdir()
        yield resolve_env(model, env_manager="conda", target=AMD64, work_dir=work)


def test_the_conda_environment_is_locked_and_fetched_on_the_host(resolved: EnvSpec) -> None:
    conda = resolved.conda
    assert conda is not None
    assert resolved.lock_file is None and resolved.wheelhouse is None and resolved.installer_wheel is None
    assert resolved.lock_digest == conda.digest
    names = {package.name for package in conda.lock.packages}
    assert {"python", "pip", "numpy", "scipy", "scikit-learn", "pandas"} <= names
    assert sorted(p.name for p in conda.packages_dir.iterdir()) == sorted(
        p.filename for p in conda.lock.packages
    )
    assert conda.pip_lock_file is not None and conda.wheelhouse is not None
    pip_lock = conda.pip_lock_file.read_text()
    # MLflow settled (skinny), kiln's runtime added, conda's packages not locked again for pip.
    assert "mlflow-skinny==" in pip_lock and "\nmlflow==" not in pip_lock
    assert "uvicorn==" in pip_lock and "starlette==" in pip_lock
    assert "\nnumpy==" not in pip_lock and "\nscikit-learn==" not in pip_lock
    assert any("mlflow-skinny" in note for note in resolved.notes)
    assert set(contract.RUNTIME_REQUIREMENTS) <= set(resolved.requirements)
    work = resolved.kiln_wheel.parent.parent
    assert sorted(path.name for path in work.iterdir()) == ["conda", "kiln"]  # nothing stale left


def test_the_oci_environment_layer_is_the_same_bytes_twice(
    resolved: EnvSpec, model: ModelInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conda = resolved.conda
    assert conda is not None
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))
    base = python_slim(image="debian:bookworm-slim", python=None, python_version=None)
    spec = build_image_spec(
        model, resolved, base, plan_python("conda", "3.11", base), ImageOptions(base_image=base.image)
    )
    assert spec.python == f"{contract.CONDA_ENV_DIR}/bin/python"
    first, second = tmp_path / "one", tmp_path / "two"
    install_conda_layer(first, spec=spec, env=resolved)
    # From a fresh install of the conda packages: not the same cached tree.
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache-2"))
    install_conda_layer(second, spec=spec, env=resolved)
    assert tree_digest(first) == tree_digest(second)
    env = first / contract.CONDA_ENV_DIR.lstrip("/")
    assert (env / "bin" / "python").exists()
    site = first / spec.site_packages.lstrip("/")
    assert (site / "mlflow").is_dir() and (site / "uvicorn").is_dir()  # the pip section
    assert list((site / "uvicorn").glob("__pycache__/*.pyc")), "no bytecode for the pip section"
    assert not list(site.glob("*/tests")), "the packages' tests were not dropped"
    assert (first / facts.CONDA_LOCK_PATH.lstrip("/")).read_text() == conda.conda_lock_file.read_text()
    assert (first / facts.CONDA_PIP_LOCK_PATH.lstrip("/")).is_file()


def test_the_installed_environment_is_made_once(resolved: EnvSpec, tmp_path: Path) -> None:
    conda = resolved.conda
    assert conda is not None
    made = installed_environment(conda.lock, conda.packages_dir, cache_dir=tmp_path)
    again = installed_environment(conda.lock, conda.packages_dir, cache_dir=tmp_path)
    assert made == again
    assert not [p for p in made.parent.iterdir() if p.name.startswith(".")]  # no scratch left
    assert list((made / "conda-meta").glob("python-3.11*.json"))
