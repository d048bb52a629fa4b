"""Predictions serialise to the same JSON as MLflow's ``predictions_to_json``, only faster."""

from __future__ import annotations

import datetime
import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest
from mlflow.pyfunc.scoring_server import predictions_to_json, unwrapped_predictions_to_json

from kiln.server.serialize import predictions_json


class Answer(pydantic.BaseModel):
    text: str
    score: float


OUTPUTS: dict[str, Any] = {
    "int-array": np.array([0, 1, 2]),
    "float-array-2d": np.array([[0.1, 0.2], [1e-7, 3e16]]),
    "float32-array": np.array([0.1, 0.5], dtype=np.float32),
    "bool-array": np.array([True, False]),
    "str-array": np.array(["a", "b"]),
    "bytes-array": np.array([b"ab", b"\x00\xff"]),
    "object-array": np.array([{"a": np.int64(1)}, b"raw", None], dtype=object),
    "nan-array": np.array([1.0, np.nan, np.inf, -np.inf]),
    "datetime64-array": np.array(["2024-01-02T03:04:05"], dtype="datetime64[s]"),
    "frame": pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, np.nan]}),
    "frame-int-columns": pd.DataFrame([[1, 2]]),
    "frame-datetimes": pd.DataFrame(
        {"t": pd.to_datetime(["2024-01-02 03:04:05.123456789", "2020-02-29 00:00:00.000000000"])}
    ),
    "frame-tz": pd.DataFrame({"t": pd.to_datetime(["2024-01-02 03:04:05"]).tz_localize("Europe/Paris")}),
    "series": pd.Series([1.5, 2.5], name="score"),
    "series-unnamed": pd.Series([1, 2]),
    "list": [1, 2.5, "x", None, True],
    "nested": {"choices": [{"index": np.int32(0), "value": np.float64(0.25)}], "usage": {1: "int key"}},
    "numpy-scalar": np.float64(3.5),
    "bytes": b"hello world" * 20,
    "date-and-time": [datetime.date(2024, 1, 2), datetime.time(3, 4, 5), datetime.datetime(2024, 1, 2, 3, 4)],
    "big-int": [2**70, -(2**65)],
    "pydantic": [Answer(text="a", score=0.5)],
    "string": "just text",
    "unicode": ["é", "日本", "\u2028"],
}


def _mlflow(raw: Any, *, unwrapped: bool) -> str:
    out = io.StringIO()
    (unwrapped_predictions_to_json if unwrapped else predictions_to_json)(raw, out)
    return out.getvalue()


@pytest.mark.parametrize("name", list(OUTPUTS))
@pytest.mark.parametrize("unwrapped", [False, True], ids=["wrapped", "unwrapped"])
def test_same_json_as_mlflow(name: str, unwrapped: bool) -> None:
    raw = OUTPUTS[name]
    ours = predictions_json(raw, unwrapped=unwrapped)
    theirs = _mlflow(raw, unwrapped=unwrapped)
    assert json.loads(ours) == json.loads(theirs) or _same_with_nan(json.loads(ours), json.loads(theirs))


def _same_with_nan(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_nan_and_infinity_are_written_like_mlflow() -> None:
    text = predictions_json(np.array([1.0, np.nan, np.inf, -np.inf])).decode()
    assert text.replace(" ", "") == '{"predictions":[1.0,NaN,Infinity,-Infinity]}'


def test_bytes_are_base64_and_datetimes_iso_8601() -> None:
    body = json.loads(predictions_json([b"\x00\xff", datetime.datetime(2024, 1, 2, 3, 4, 5)]))
    assert body == {"predictions": ["AP8=\n", "2024-01-02T03:04:05"]}


def test_unserialisable_output_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="object"):
        predictions_json([object()])
