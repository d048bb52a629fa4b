"""The built image itself: config, user, contents, lifecycle, and no secret in any layer."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.docker_support import assert_not_in_image
from tests.e2e.conftest import SECRET_TOKEN, Built
from tests.e2e.containers import container
from tests.env.conftest import PackageIndex
from tests.runtime.scoring import iris_expected, iris_request

from kiln import __version__, contract
from kiln.backends.docker.builder import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _inspect(builder: DockerBuilder, tag: str) -> dict[str, object]:
    details = builder.inspect(tag)
    assert details is not None
    return details


def _sh(builder: DockerBuilder, tag: str, script: str, *args: str) -> str:
    result = builder.cli.run(["run", "--rm", *args, "--entrypoint", "/bin/sh", tag, "-c", script])
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_build_output_shows_progress_and_notes(iris_venv: Built) -> None:
    # Not a terminal here: plain lines, one per phase and step, and kiln.env's notes.
    assert "==> resolving the Python environment" in iris_venv.stderr
    assert "==> building image" in iris_venv.stderr
    assert "note: mlflow==" in iris_venv.stderr and "mlflow-skinny" in iris_venv.stderr
    assert f"Built {iris_venv.tag}" in iris_venv.stdout and "with buildkit" in iris_venv.stdout


def test_the_classic_builder_built_the_uv_image(iris_uv: Built) -> None:
    assert "with classic" in iris_uv.stdout
    assert "    [1/" in iris_uv.stderr  # classic step numbering: "[n/m] INSTRUCTION"


def test_image_config(
    docker_builder: DockerBuilder, iris_venv: Built, model_dir: Callable[[str], Path]
) -> None:
    config = _inspect(docker_builder, iris_venv.tag)["Config"]
    assert isinstance(config, dict)
    assert config["User"] == f"{contract.UID}:{contract.GID}"
    assert f"{contract.PORT}/tcp" in config["ExposedPorts"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["Healthcheck"]["Test"][-2:] == ["-m", "kiln.runtime.healthcheck"]
    assert config["Entrypoint"] == [f"{contract.VENV_DIR}/bin/python", "-m", "kiln.runtime"]
    labels = config["Labels"]
    assert labels[contract.LABEL_VERSION] == __version__
    assert labels[contract.LABEL_MODEL_URI] == str(model_dir("sklearn_iris"))
    assert json.loads(labels[contract.LABEL_MODEL_SIGNATURE])["inputs"][0]["type"] == "double"
    assert labels[contract.LABEL_ENV_MANAGER] == "virtualenv"
    assert labels["org.opencontainers.image.base.name"] == "kiln-test/python:3.11-slim"
    lock = _sh(docker_builder, iris_venv.tag, f"cat {contract.LOCK_PATH}")
    assert labels[contract.LABEL_LOCK_DIGEST] == "sha256:" + hashlib.sha256(lock.encode()).hexdigest()
    assert "--hash=sha256:" in lock


def test_image_contents(docker_builder: DockerBuilder, iris_venv: Built) -> None:
    script = (
        "for t in java javac gcc cc g++ make pip pip3; do command -v $t && echo found $t; done; "
        "ls -A /var/lib/apt/lists | grep -v -x -e lock -e partial; "
        "ls -d /root/.cache /tmp/kiln-build /opt/kiln/kiln-stage 2>/dev/null; "
        "echo venv:$(ls /opt/kiln/venv/lib/python3.11/site-packages "
        "| grep -c -i -e '^kiln$' -e '^sklearn$'); "
        "echo system-sklearn:$(ls /usr/local/lib/python3.11 /usr/lib/python3/dist-packages 2>/dev/null "
        "| grep -c sklearn); "
        "echo nginx:$(command -v nginx); "
        "echo package-tests:$(find /opt/kiln/venv -type d -name tests -path '*/site-packages/*' | wc -l)"
    )
    out = _sh(docker_builder, iris_venv.tag, script, "--user", "0")
    assert "found" not in out, out
    assert "venv:2" in out and "system-sklearn:0" in out and "nginx:/usr/sbin/nginx" in out
    assert "package-tests:0" in out, out
    assert out.count("\n") == 4, f"unexpected files (apt lists, caches, build leftovers):\n{out}"


def test_model_is_root_owned_and_read_only_for_the_runtime_user(
    docker_builder: DockerBuilder, iris_venv: Built
) -> None:
    script = (
        f"stat -c '%U %a' {contract.MODEL_DIR} {contract.MODEL_DIR}/MLmodel; id -u; "
        f"touch {contract.MODEL_DIR}/x 2>/dev/null && echo writable || echo read-only"
    )
    out = _sh(docker_builder, iris_venv.tag, script).split()
    assert out == ["root", "755", "root", "644", str(contract.UID), "read-only"]


def test_stop_drains_and_restart_works(
    docker_builder: DockerBuilder, iris_venv: Built, model_dir: Callable[[str], Path]
) -> None:
    model = model_dir("sklearn_iris")
    with container(docker_builder.cli, iris_venv.tag, workers=None) as running:
        running.wait_ready()
        assert running.post(iris_request(model)).status_code == 200
        health = _wait_health(running.state, timeout=60)
        assert health == "healthy"
        assert running.docker("restart", "--time", "30", running.name).returncode == 0
        running.wait_ready()
        assert running.post(iris_request(model)).json() == {"predictions": iris_expected(model)}
        stopped = running.docker("stop", "--time", "30", running.name)
        assert stopped.returncode == 0
        state = running.wait_exit()
        assert state["ExitCode"] == 0, running.logs()[-3000:]
        assert "Traceback" not in running.logs()


def test_arbitrary_user_and_read_only_root(
    docker_builder: DockerBuilder, iris_venv: Built, model_dir: Callable[[str], Path]
) -> None:
    model = model_dir("sklearn_iris")
    args = ("--user", "12345", "--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777")
    with container(docker_builder.cli, iris_venv.tag, *args) as running:
        running.wait_ready()
        assert running.post(iris_request(model)).json() == {"predictions": iris_expected(model)}


def test_no_secret_in_any_layer_or_the_config(
    docker_builder: DockerBuilder, iris_venv: Built, token_index: PackageIndex, tmp_path: Path
) -> None:
    # The token was really in play: the host's resolver sent it to the index...
    sent = [base64.b64decode(a.split()[1]).decode() for a in token_index.authorizations if a]
    assert f"user:{SECRET_TOKEN}" in sent, token_index.authorizations[:5]
    # ...and it is in no layer of the image, nor in its config or history.
    assert assert_not_in_image(docker_builder, iris_venv.tag, SECRET_TOKEN, tmp_path) >= 5


def _wait_health(state: Callable[[], dict[str, object]], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    status = "none"
    while time.monotonic() < deadline:
        health = state().get("Health")
        status = str(health.get("Status")) if isinstance(health, dict) else "none"
        if status != "starting":
            return status
        time.sleep(1)
    return status


def test_smoke_test_prints_the_prediction(iris_uv: Built, model_dir: Callable[[str], Path]) -> None:
    import mlflow.sklearn
    import pandas

    model = model_dir("sklearn_iris")
    example = json.loads((model / "serving_input_example.json").read_text())["dataframe_split"]
    frame = pandas.DataFrame(example["data"], columns=example["columns"])
    expected = [int(v) for v in mlflow.sklearn.load_model(str(model)).predict(frame)]
    line = next(line for line in iris_uv.stdout.splitlines() if line.startswith("Smoke test predictions:"))
    assert json.loads(line.split(":", 1)[1]) == {"predictions": expected}
