"""``kiln serve -m URI`` against a real tracking server: runs:/, models:/name/N, models:/name@alias."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.model.conftest import Registry
from tests.runtime.running import free_port, running
from tests.runtime.scoring import IRIS_ROWS, iris_columns, iris_request


def _serve_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KILN_", "MLFLOW_TRACKING"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true")
    return env


@pytest.mark.parametrize(
    ("uri", "which"),
    [
        ("runs:/{run_id}/model", "iris"),
        ("models:/{name}/1", "iris"),
        ("models:/{name}@{alias}", "iris"),
        ("models:/{name}/2", "constant"),
    ],
)
def test_kiln_serve_model_uri(
    uri: str,
    which: str,
    registry: Registry,
    model_dir: Callable[[str], Path],
    tmp_path: Path,
    private_tmp: Path,
) -> None:
    model_uri = uri.format(run_id=registry.run_id, name=registry.name, alias=registry.alias)
    port = free_port()
    command = [
        sys.executable, "-m", "kiln", "serve", "-m", model_uri, "--tracking-uri", registry.server.url,
        "--port", str(port), "--workers", "1", "--no-nginx",
    ]  # fmt: skip
    temp = private_tmp  # short: kiln serve's runtime dir and its sockets go in it
    env = {**_serve_env(), "TMPDIR": str(temp)}
    with running(command, env, port, tmp_path, tmp_path / "logs") as run:
        run.wait_ready()
        columns = iris_columns(model_dir("sklearn_iris"))
        response = run.post("/invocations", iris_request(model_dir("sklearn_iris")))
        assert response.status_code == 200, response.text
        # registry.predictions are the logged model's answers for the whole iris data set; the
        # constant model answers 2 everywhere, the iris model its own predict for these rows.
        if which == "constant":
            assert response.json() == {"predictions": [2, 2, 2]}
        else:
            import mlflow.sklearn
            import pandas

            frame = pandas.DataFrame(IRIS_ROWS, columns=columns)
            expected = mlflow.sklearn.load_model(str(model_dir("sklearn_iris"))).predict(frame).tolist()
            assert response.json() == {"predictions": expected}
        # The model was downloaded into a temp dir ...
        assert any(p.name.startswith("kiln-model-") for p in temp.iterdir())
    # ... which is gone once kiln serve stopped.
    assert not any(p.name.startswith("kiln-model-") for p in temp.iterdir())


def test_kiln_serve_unknown_alias_is_a_clear_error(registry: Registry) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kiln", "serve", "-m", f"models:/{registry.name}@nope",
         "--tracking-uri", registry.server.url],
        env=_serve_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"models:/{registry.name}@nope" in result.stderr
    assert registry.server.url in result.stderr
    assert "Traceback" not in result.stderr
