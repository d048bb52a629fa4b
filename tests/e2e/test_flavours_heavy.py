"""The flavour matrix's deep-learning half (issue 13): a tiny torch.nn module and a tiny transformers
pipeline built from a config, each built with ``kiln build``, scored with its input example and
compared with MLflow's in-process predict. Their CPU images must carry PyTorch's CPU build
(``torch==X+cpu``, which this host's pip configuration offers) and no CUDA library.

Marked ``heavy`` as well: PyTorch makes each image several hundred MB and each start slow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e.flavour_support import (
    Backend,
    FlavourImages,
    assert_same_answer,
    flavour_images,  # noqa: F401
    image_lock,
    locked_names,
    mlflow_answer,
    score,
    serving_example,
)

from kiln.backends.docker.builder import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.heavy, pytest.mark.timeout(1800)]

MATRIX = [  # one backend each: an image here takes 60-80 s to build and start
    ("pytorch_tiny", "oci"),
    ("transformers_tiny", "docker"),
]


@pytest.mark.parametrize(("scenario", "backend"), MATRIX)
def test_image_answers_what_mlflow_predicts(
    scenario: str,
    backend: Backend,
    docker_builder: DockerBuilder,
    model_dir: Callable[[str], Path],
    flavour_images: FlavourImages,  # noqa: F811
) -> None:
    model = model_dir(scenario)
    image = flavour_images.get(scenario, model, backend)
    body = serving_example(model)
    assert_same_answer(score(docker_builder, image, body), mlflow_answer(model, body), rel=1e-5)


@pytest.mark.parametrize(("scenario", "backend"), MATRIX)
def test_cpu_image_has_pytorchs_cpu_build(
    scenario: str,
    backend: Backend,
    docker_builder: DockerBuilder,
    model_dir: Callable[[str], Path],
    flavour_images: FlavourImages,  # noqa: F811
) -> None:
    """The model asks for ``torch==X`` (PyPI's, with CUDA); the CPU image's lock holds ``torch==X+cpu``."""
    model = model_dir(scenario)
    asked = next(r for r in (model / "requirements.txt").read_text().split() if r.startswith("torch=="))
    assert "+" not in asked
    image = flavour_images.get(scenario, model, backend)
    lock = image_lock(docker_builder, image)
    assert f"{asked}+cpu" in lock
    assert not sorted(n for n in locked_names(lock) if n.startswith("nvidia-") or n == "triton")
    assert f"{asked} -> {asked}+cpu" in image.output
