"""Helpers for streaming tests: the streaming test model, and reading events as MLflow's client does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

MODEL_CODE = Path(__file__).parent / "stream_model.py"
PARAMS = {"chunks": 3, "first_delay": 0.0, "delay": 0.0, "fail_at": -1, "record": ""}
DONE = "[DONE]"


def save_stream_model(
    dest: Path, *, streamable: bool | None = None, params: dict[str, Any] | None = None
) -> Path:
    """The streaming pyfunc of ``stream_model.py`` with a ``prompt`` input and ``PARAMS``."""
    import mlflow
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    signature = infer_signature({"prompt": "hi"}, ["hi0"], params=params or PARAMS)
    mlflow.pyfunc.save_model(
        str(dest),
        python_model=str(MODEL_CODE),
        signature=signature,
        streamable=streamable,
        pip_requirements=[f"mlflow=={mlflow.__version__}"],
    )
    return dest


def events(response: requests.Response) -> Iterator[Any]:
    """MLflow's ``DatabricksDeploymentClient.predict_stream`` reading: every non-empty line is
    ``data: <JSON>``, and ``data: [DONE]`` ends the stream (yielded as DONE)."""
    response.encoding = "utf-8"
    for raw in response.iter_lines(decode_unicode=True):
        line = raw.strip()
        if not line:
            continue
        key, _, value = line.partition(":")
        assert key == "data", f"a line that is not 'data: ...': {line!r}"
        value = value.strip()
        if value == DONE:
            yield DONE
            return
        yield json.loads(value)
