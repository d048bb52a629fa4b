"""``kiln build -m models:/...`` against a real tracking server: labels name what was resolved,
moving the alias changes what is built, and the tracking token stays on the host."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from kiln import contract
from kiln.backends.docker.builder import DockerBuilder
from tests.docker_support import BASE_IMAGE, assert_not_in_image, docker_builder  # noqa: F401
from tests.e2e.conftest import kiln
from tests.e2e.containers import container
from tests.model.conftest import Registry
from tests.runtime.scoring import iris_expected, iris_request
from tests.tracking import logging_to

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TOKEN = "kiln-test-secret-token"


@pytest.fixture
def tags(docker_builder: DockerBuilder) -> Iterator[Callable[[str], str]]:  # noqa: F811
    made: list[str] = []

    def tag(name: str) -> str:
        made.append(f"kiln-uri/{name}:{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield tag
    for name in made:
        docker_builder.cli.run(["image", "rm", "--force", name], timeout=300)


def _labels(builder: DockerBuilder, tag: str) -> dict[str, str]:
    out = builder.cli.run(["image", "inspect", "--format", "{{json .Config.Labels}}", tag]).stdout
    return dict(json.loads(out))


def _build(uri: str, tag: str, registry: Registry) -> None:
    result = kiln(
        "build", "-m", uri, "-n", tag, "--base-image", BASE_IMAGE, "--tracking-uri", registry.server.url,
        env={"MLFLOW_TRACKING_TOKEN": TOKEN},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_from_an_alias_then_move_the_alias(
    registry: Registry,
    docker_builder: DockerBuilder,  # noqa: F811
    model_dir: Callable[[str], Path],
    tags: Callable[[str], str],
    tmp_path: Path,
) -> None:
    uri = f"models:/{registry.name}@{registry.alias}"
    first = tags("champion")
    _build(uri, first, registry)
    labels = _labels(docker_builder, first)
    assert labels[contract.LABEL_MODEL_URI] == uri
    assert labels[contract.LABEL_MODEL_NAME] == registry.name
    assert labels[contract.LABEL_MODEL_VERSION] == "1"
    assert labels[contract.LABEL_MODEL_RUN_ID] == registry.run_id
    # The token was set for the build: it is in no layer, label, config or history.
    assert assert_not_in_image(docker_builder, first, TOKEN, tmp_path) >= 5
    model = model_dir("sklearn_iris")
    with container(docker_builder.cli, first) as running:
        running.wait_ready()
        assert running.post(iris_request(model)).json() == {"predictions": iris_expected(model)}

    with logging_to(registry.server):
        MlflowClient().set_registered_model_alias(registry.name, registry.alias, "2")
    try:
        second = tags("champion-moved")
        _build(uri, second, registry)
    finally:
        with logging_to(registry.server):
            MlflowClient().set_registered_model_alias(registry.name, registry.alias, "1")
    assert _labels(docker_builder, second)[contract.LABEL_MODEL_VERSION] == "2"
    with container(docker_builder.cli, second) as running:
        running.wait_ready()
        assert running.post(iris_request(model)).json() == {"predictions": [2, 2, 2]}


def test_build_from_a_run(
    registry: Registry,
    docker_builder: DockerBuilder,  # noqa: F811
    tags: Callable[[str], str],
) -> None:
    tag = tags("run")
    _build(f"runs:/{registry.run_id}/model", tag, registry)
    labels = _labels(docker_builder, tag)
    assert labels[contract.LABEL_MODEL_URI] == f"runs:/{registry.run_id}/model"
    assert labels[contract.LABEL_MODEL_RUN_ID] == registry.run_id


def test_build_from_a_missing_version_is_a_clear_error(registry: Registry) -> None:
    result = kiln(
        "build", "-m", f"models:/{registry.name}/99", "-n", "kiln-uri/never:1", "--base-image", BASE_IMAGE,
        "--tracking-uri", registry.server.url,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"models:/{registry.name}/99" in result.stderr
    assert registry.server.url in result.stderr
    assert "Traceback" not in result.stderr
