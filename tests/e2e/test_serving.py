"""Images built with each env manager serve the model's own predictions over JSON and CSV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e.conftest import Built
from tests.e2e.containers import container
from tests.runtime.scoring import IRIS_ROWS, iris_columns, iris_expected, iris_request

from kiln.backends.docker.builder import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def iris_csv(model: Path) -> str:
    header = ",".join(iris_columns(model))
    return header + "\n" + "\n".join(",".join(str(v) for v in row) for row in IRIS_ROWS) + "\n"


@pytest.mark.parametrize("image", ["iris_venv", "iris_uv", "iris_local"])
def test_image_serves_the_models_predictions(
    image: str,
    request: pytest.FixtureRequest,
    docker_builder: DockerBuilder,
    model_dir: Callable[[str], Path],
) -> None:
    built: Built = request.getfixturevalue(image)
    model = model_dir("sklearn_iris")
    expected = iris_expected(model)
    with container(docker_builder.cli, built.tag) as running:
        running.wait_ready()
        assert running.post(iris_request(model)).json() == {"predictions": expected}
        assert running.post(iris_csv(model), "text/csv").json() == {"predictions": expected}
        answer = running.post("{}", "text/plain")
        assert answer.status_code == 415
