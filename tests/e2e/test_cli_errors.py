"""User mistakes give one clear ``Error:`` and a non-zero exit, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.docker_support import BASE_IMAGE
from tests.e2e.conftest import kiln

pytestmark = pytest.mark.docker


def _assert_user_error(result: object, *fragments: str) -> str:
    import subprocess

    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    error = next((line for line in result.stderr.splitlines() if line.startswith("Error: ")), None)
    assert error is not None, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


def test_missing_model_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    result = kiln("build", "-m", str(missing), "-n", "kiln-e2e/never:1")
    _assert_user_error(result, f"model path '{missing}' does not exist")


def test_not_a_pyfunc_model(model_dir: Callable[[str], Path]) -> None:
    result = kiln("build", "-m", str(model_dir("not_pyfunc")), "-n", "kiln-e2e/never:1")
    _assert_user_error(result, "has no 'python_function' flavour", "keras")


def test_docker_unreachable(model_dir: Callable[[str], Path]) -> None:
    result = kiln(
        "build",
        "-m",
        str(model_dir("sklearn_iris")),
        "-n",
        "kiln-e2e/never:1",
        env={"DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    _assert_user_error(
        result, "no Docker engine answers at unix:///nonexistent.sock", "start the Docker engine"
    )


def test_invalid_image_name(model_dir: Callable[[str], Path]) -> None:
    result = kiln("build", "-m", str(model_dir("sklearn_iris")), "-n", "Not A Name")
    _assert_user_error(result, "image name 'Not A Name' is not a valid Docker reference")
    assert result.returncode == 2


@pytest.mark.slow
def test_base_image_with_another_python_fails_clearly(
    model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    # The model wants 3.12; the base has 3.11; uv cannot download interpreters here.
    model = tmp_path / "py312"
    shutil.copytree(model_dir("sklearn_iris"), model)
    (model / "python_env.yaml").write_text("python: 3.12.4\ndependencies:\n- -r requirements.txt\n")
    result = kiln("build", "-m", str(model), "-n", "kiln-e2e/never:1", "--base-image", BASE_IMAGE)
    _assert_user_error(
        result,
        f"base image '{BASE_IMAGE}' has Python 3.11.2, but the environment needs Python 3.12",
        "kiln tried to download Python 3.12",
        "--base-image python:3.12-slim",
    )


def test_a_model_that_does_not_load_fails_the_build(model_dir: Callable[[str], Path]) -> None:
    # The build-time load check: the model's own error at build time, instead of at deployment.
    tag = "kiln-e2e/load-check:1"
    result = kiln("build", "-m", str(model_dir("load_raises")), "-n", tag, "--base-image", BASE_IMAGE)
    try:
        assert result.returncode == 1
        error = next(line for line in result.stderr.splitlines() if line.startswith("Error: "))
        assert "the model does not load in the image it was built into" in error
        assert "deliberate failure while loading the model" in error
        assert "--no-load-check skips this check" in result.stderr
        # The traceback shown is the model's, from inside the image; none of kiln's own.
        assert "/opt/kiln/venv/" in result.stderr and "src/kiln/" not in result.stderr
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)
