"""Requests and expected answers for the scenario models, computed from the models themselves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def iris_columns(model: Path) -> list[str]:
    import yaml

    signature = yaml.safe_load((model / "MLmodel").read_text())["signature"]
    return [column["name"] for column in json.loads(signature["inputs"])]


def iris_request(model: Path) -> str:
    return json.dumps({"dataframe_split": {"columns": iris_columns(model), "data": IRIS_ROWS}})


def iris_expected(model: Path) -> list[Any]:
    """What the model itself predicts for IRIS_ROWS."""
    import mlflow.sklearn
    import pandas

    frame = pandas.DataFrame(IRIS_ROWS, columns=iris_columns(model))
    return [int(v) for v in mlflow.sklearn.load_model(str(model)).predict(frame)]


def slow_request(seconds: float) -> str:
    return json.dumps({"dataframe_records": [{"seconds": seconds}]})
