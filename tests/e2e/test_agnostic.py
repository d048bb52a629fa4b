"""A model-agnostic image serves whichever model is mounted, and refuses one it cannot run."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e.conftest import Built
from tests.e2e.containers import container
from tests.runtime.scoring import iris_expected, iris_request

from kiln import contract
from kiln.backends.docker.builder import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _mount(model: Path) -> tuple[str, ...]:
    return ("--volume", f"{model}:{contract.MODEL_DIR}:ro")


@pytest.mark.parametrize("scenario", ["sklearn_iris", "sklearn_iris_constant"])
def test_serves_the_mounted_model(
    scenario: str, docker_builder: DockerBuilder, agnostic: Built, model_dir: Callable[[str], Path]
) -> None:
    model = model_dir(scenario)
    expected = iris_expected(model)
    with container(docker_builder.cli, agnostic.tag, *_mount(model)) as running:
        running.wait_ready()
        assert running.post(iris_request(model)).json() == {"predictions": expected}
    if scenario == "sklearn_iris_constant":
        assert expected == [2, 2, 2]


def test_a_model_needing_missing_packages_fails_fast(
    docker_builder: DockerBuilder, agnostic: Built, model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    model = tmp_path / "needs_more"
    shutil.copytree(model_dir("sklearn_iris"), model)
    with (model / "requirements.txt").open("a") as handle:
        handle.write("\nkiln-test-absent-package==1.2.3\n")
    model.chmod(0o755)
    with container(docker_builder.cli, agnostic.tag, *_mount(model)) as running:
        state = running.wait_exit(timeout=120)
        logs = running.logs()
    assert state["ExitCode"] != 0
    assert "needs packages this image does not have" in logs
    assert "kiln-test-absent-package==1.2.3" in logs and "not installed" in logs
    assert contract.ENV_INSTALL_MISSING[0] in logs
    assert "Traceback" not in logs
