"""The flavour matrix (issue 13): a real model of each MLflow flavour, built with ``kiln build`` on a
slim base, run, and scored with its own input example; the image answers what MLflow predicts
in this process for the same request. pytorch and transformers: test_flavours_heavy.py.

Each image is built once for the module and shared by every test that needs it. Every flavour
is built by one backend, the two backends taking turns (a build costs 30-60 s on two cores);
lightgbm by both, as each backend adds the native library its own way. A model-agnostic image
(``--env-from``) serves the custom pyfunc (artifacts and ``code_paths``) mounted at /opt/ml/model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.e2e.flavour_support import (
    Backend,
    FlavourImages,
    assert_same_answer,
    flavour_images,  # noqa: F401
    image_lock,
    install_sdist,
    locked_names,
    mlflow_answer,
    score,
    serving_example,
    with_extra_index,
)
from tests.env.conftest import PackageIndex
from tests.fixtures.models import flavours

from kiln.backends.docker.builder import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]

MATRIX = [
    ("sklearn_pipeline", "oci"),
    ("xgboost_classifier", "docker"),
    ("lightgbm_classifier", "docker"),
    ("lightgbm_classifier", "oci"),
    ("statsmodels_ols", "oci"),
    ("onnx_regressor", "docker"),
    ("artifacts_pyfunc", "oci"),
    ("sdist_requirement", "docker"),
]


@pytest.fixture(scope="module")
def sdist_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackageIndex]:
    """A PEP 503 index on 127.0.0.1 serving kiln-fixture-sdist 1.0.0 as an sdist and nothing else."""
    index = PackageIndex(tmp_path_factory.mktemp("sdist-index"))
    index.add(flavours.SDIST_NAME, *flavours.sdist_package())
    try:
        yield index
    finally:
        index.close()


@pytest.fixture
def in_process_sdist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kiln-fixture-sdist importable in this process, installed from its sdist, for MLflow's own predict."""
    name, data = flavours.sdist_package()
    (tmp_path / name).write_bytes(data)
    monkeypatch.syspath_prepend(str(install_sdist(tmp_path / name, tmp_path / "site")))


@pytest.mark.parametrize(("scenario", "backend"), MATRIX)
def test_image_answers_what_mlflow_predicts(
    scenario: str,
    backend: Backend,
    request: pytest.FixtureRequest,
    docker_builder: DockerBuilder,
    model_dir: Callable[[str], Path],
    flavour_images: FlavourImages,  # noqa: F811
) -> None:
    model = model_dir(scenario)
    env = None
    if scenario == "sdist_requirement":
        env = with_extra_index(request.getfixturevalue("sdist_index").url())
        request.getfixturevalue("in_process_sdist")
    image = flavour_images.get(scenario, model, backend, env)
    body = serving_example(model)
    assert_same_answer(score(docker_builder, image, body), mlflow_answer(model, body))
    if scenario == "sdist_requirement":
        assert "published only as sdists: kiln-fixture-sdist" in image.output
    if scenario == "lightgbm_classifier":  # its wheel needs libgomp.so.1; the slim base lacks it
        assert "libgomp1" in image.output


def test_xgboost_cpu_image_carries_no_cuda_libraries(
    docker_builder: DockerBuilder,
    model_dir: Callable[[str], Path],
    flavour_images: FlavourImages,  # noqa: F811
) -> None:
    """The model asks for ``xgboost`` (whose wheels pull nvidia-nccl-cu12); the CPU image gets xgboost-cpu."""
    model = model_dir("xgboost_classifier")
    assert any(line.startswith("xgboost==") for line in (model / "requirements.txt").read_text().split())
    image = flavour_images.get("xgboost_classifier", model, "docker")  # the lock is the same for both
    names = locked_names(image_lock(docker_builder, image))
    assert "xgboost-cpu" in names and "xgboost" not in names
    assert not sorted(n for n in names if n.startswith("nvidia-"))
    assert "xgboost==" in image.output and "-> xgboost-cpu==" in image.output


def test_model_agnostic_image_serves_the_mounted_model(
    docker_builder: DockerBuilder,
    model_dir: Callable[[str], Path],
    flavour_images: FlavourImages,  # noqa: F811
) -> None:
    model = model_dir("artifacts_pyfunc")
    image = flavour_images.get("artifacts_pyfunc", model, "agnostic")
    body = serving_example(model)
    assert_same_answer(score(docker_builder, image, body, mount=model), mlflow_answer(model, body))
