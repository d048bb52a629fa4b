"""Scoring requests, good and bad, shared by the differential and protocol tests."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]


def iris_frame() -> pd.DataFrame:
    return pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS)


@dataclass(frozen=True)
class Case:
    id: str
    model: str
    body: bytes
    content_type: str | None = JSON
    expect: Callable[[Any], Any] | None = None
    """For good requests: the answer computed with the loaded model's own ``predict``."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type} if self.content_type is not None else {}


def _j(value: object) -> bytes:
    return json.dumps(value).encode()


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


_split = {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}
_records = iris_frame().to_dict(orient="records")
_reordered = iris_frame()[list(reversed(IRIS_COLUMNS))]
_params_frame = pd.DataFrame({"x": [1.0, 2.5, -3.0], "text": ["a", "b", "c"]})


def _iris(frame: pd.DataFrame | None = None) -> Callable[[Any], Any]:
    return lambda model: {"predictions": model.predict(iris_frame() if frame is None else frame).tolist()}


def _one_row(row: list[float]) -> Callable[[Any], Any]:
    return _iris(pd.DataFrame([row], columns=IRIS_COLUMNS))


def _params(**params: Any) -> Callable[[Any], Any]:
    return lambda model: {
        "predictions": model.predict(_params_frame, params=params).to_dict(orient="records")
    }


def _tensor(model: Any) -> Any:
    return {"predictions": model.predict(np.array(IRIS_ROWS)).tolist()}


def _llm(text: str, **params: Any) -> Callable[[Any], Any]:
    return lambda model: model.predict({"messages": [{"role": "user", "content": text}]}, params=params)


GOOD = [
    Case("split", "sklearn_iris", _j({"dataframe_split": _split}), expect=_iris()),
    Case(
        "split-reordered",
        "sklearn_iris",
        _j({"dataframe_split": _reordered.to_dict(orient="split")}),
        expect=_iris(),
    ),
    Case(
        "split-with-index",
        "sklearn_iris",
        _j({"dataframe_split": {**_split, "index": [7, 8, 9]}}),
        expect=_iris(),
    ),
    Case(
        "split-ints",
        "sklearn_iris",
        _j({"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[5, 3, 1, 0]]}}),
        expect=_one_row([5.0, 3.0, 1.0, 0.0]),
    ),
    Case(
        "split-mixed-int-float",
        "sklearn_iris",
        _j({"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[5, 3.5, 1, 0.2]]}}),
        expect=_one_row([5.0, 3.5, 1.0, 0.2]),
    ),
    Case(
        "split-numeric-strings",
        "sklearn_iris",
        _j({"dataframe_split": {"columns": IRIS_COLUMNS, "data": [["5.1", "3.5", "1.4", "0.2"]]}}),
        expect=_one_row([5.1, 3.5, 1.4, 0.2]),
    ),
    Case(
        "split-extra-column",
        "sklearn_iris",
        _j({"dataframe_split": {"columns": [*IRIS_COLUMNS, "extra"], "data": [[5.1, 3.5, 1.4, 0.2, 9]]}}),
        expect=_one_row([5.1, 3.5, 1.4, 0.2]),
    ),
    Case("records", "sklearn_iris", _j({"dataframe_records": _records}), expect=_iris()),
    Case(
        "records-reordered",
        "sklearn_iris",
        _j({"dataframe_records": _reordered.to_dict(orient="records")}),
        expect=_iris(),
    ),
    Case(
        "records-extra-column",
        "sklearn_iris",
        _j({"dataframe_records": [{**r, "extra": "x"} for r in _records]}),
        expect=_iris(),
    ),
    Case("instances-records", "sklearn_iris", _j({"instances": _records}), expect=_iris()),
    Case(
        "inputs-columns", "sklearn_iris", _j({"inputs": iris_frame().to_dict(orient="list")}), expect=_iris()
    ),
    Case("inputs-records", "sklearn_iris", _j({"inputs": _records}), expect=_iris()),
    Case(
        "json-charset",
        "sklearn_iris",
        _j({"dataframe_split": _split}),
        "application/json; charset=UTF-8",
        expect=_iris(),
    ),
    Case(
        "json-params-no-schema",
        "sklearn_iris",
        _j({"dataframe_split": _split, "params": {"unknown": 1}}),
        expect=_iris(),
    ),
    Case("csv", "sklearn_iris", _csv(iris_frame()), CSV, expect=_iris()),
    Case("csv-charset", "sklearn_iris", _csv(iris_frame()), "text/csv; charset=utf-8", expect=_iris()),
    Case("csv-reordered", "sklearn_iris", _csv(_reordered), CSV, expect=_iris()),
    Case("parquet", "sklearn_iris", _parquet(iris_frame()), PARQUET, expect=_iris()),
    Case("tensor-inputs", "sklearn_tensor", _j({"inputs": IRIS_ROWS}), expect=_tensor),
    Case("tensor-instances", "sklearn_tensor", _j({"instances": IRIS_ROWS}), expect=_tensor),
    Case("tensor-split", "sklearn_tensor", _j({"dataframe_split": {"data": IRIS_ROWS}}), expect=_tensor),
    Case(
        "params-split",
        "custom_pyfunc_params",
        _j(
            {
                "dataframe_split": _params_frame.to_dict(orient="split"),
                "params": {"multiplier": 2.0, "suffix": "!"},
            }
        ),
        expect=_params(multiplier=2.0, suffix="!"),
    ),
    Case(
        "params-int-for-double",
        "custom_pyfunc_params",
        _j({"dataframe_records": _params_frame.to_dict(orient="records"), "params": {"multiplier": 3}}),
        expect=_params(multiplier=3.0),
    ),
    Case(
        "params-defaults",
        "custom_pyfunc_params",
        _j({"dataframe_records": _params_frame.to_dict(orient="records")}),
        expect=_params(),
    ),
    Case(
        "params-unknown-ignored",
        "custom_pyfunc_params",
        _j(
            {
                "dataframe_records": _params_frame.to_dict(orient="records"),
                "params": {"nope": 1, "suffix": "?"},
            }
        ),
        expect=_params(suffix="?"),
    ),
    Case(
        "params-inputs",
        "custom_pyfunc_params",
        _j({"inputs": _params_frame.to_dict(orient="list"), "params": {"suffix": "s"}}),
        expect=_params(suffix="s"),
    ),
    Case("params-csv", "custom_pyfunc_params", _csv(_params_frame), CSV, expect=_params()),
    Case(
        "llm-messages",
        "llm_echo",
        _j({"messages": [{"role": "user", "content": "hello"}]}),
        expect=_llm("hello"),
    ),
    Case(
        "llm-messages-param",
        "llm_echo",
        _j({"messages": [{"role": "user", "content": "abc"}], "max_tokens": 5}),
        expect=_llm("abc", max_tokens=5),
    ),
    Case(
        "slow-zero",
        "slow_predict",
        _j({"dataframe_records": [{"seconds": 0.0}]}),
        expect=lambda model: {"predictions": model.predict(pd.DataFrame({"seconds": [0.0]}))},
    ),
]

BAD = [
    Case(
        "split-null",
        "sklearn_iris",
        _j({"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[None, 3.5, 1.4, 0.2]]}}),
    ),
    Case(
        "missing-column",
        "sklearn_iris",
        _j({"dataframe_split": {"columns": IRIS_COLUMNS[:3], "data": [r[:3] for r in IRIS_ROWS]}}),
    ),
    Case("split-no-columns", "sklearn_iris", _j({"dataframe_split": {"data": IRIS_ROWS}})),
    Case(
        "non-numeric-value",
        "sklearn_iris",
        _j({"dataframe_split": {"columns": IRIS_COLUMNS, "data": [["x", 3.5, 1.4, 0.2]]}}),
    ),
    Case(
        "records-missing-key",
        "sklearn_iris",
        _j({"dataframe_records": [_records[0], {IRIS_COLUMNS[0]: 1.0}]}),
    ),
    Case("malformed-json", "sklearn_iris", b'{"dataframe_split": '),
    Case("json-list", "sklearn_iris", _j([1, 2, 3])),
    Case("json-scalar", "sklearn_iris", b"42"),
    Case("json-string", "sklearn_iris", b'"dataframe_split"'),
    Case("two-format-keys", "sklearn_iris", _j({"dataframe_split": _split, "instances": _records})),
    Case("no-format-key", "sklearn_iris", _j({"data": IRIS_ROWS})),
    Case("empty-object", "sklearn_iris", b"{}"),
    Case("split-shaped-as-records", "sklearn_iris", _j({"dataframe_split": _records})),
    Case("records-shaped-as-split", "sklearn_iris", _j({"dataframe_records": _split})),
    Case("split-index-wrong-length", "sklearn_iris", _j({"dataframe_split": {**_split, "index": [1]}})),
    Case("split-extra-key", "sklearn_iris", _j({"dataframe_split": {**_split, "dtypes": {}}})),
    Case(
        "split-ragged",
        "sklearn_iris",
        _j({"dataframe_split": {"columns": IRIS_COLUMNS, "data": [[1.0, 2.0], [1.0]]}}),
    ),
    Case("empty-json", "sklearn_iris", b""),
    Case("empty-csv", "sklearn_iris", b"", CSV),
    Case("invalid-utf8-json", "sklearn_iris", b'{"dataframe_split": "\xff\xfe"}'),
    Case("invalid-utf8-csv", "sklearn_iris", b"a,b\n\xff,\xfe\n", CSV),
    Case("garbage-parquet", "sklearn_iris", b"not parquet", PARQUET),
    Case(
        "unknown-content-param",
        "sklearn_iris",
        _j({"dataframe_split": _split}),
        "application/json; something=something",
    ),
    Case(
        "latin1-charset", "sklearn_iris", _j({"dataframe_split": _split}), "application/json; charset=latin-1"
    ),
    Case("text-plain", "sklearn_iris", b"hello", "text/plain"),
    Case(
        "instances-ragged",
        "sklearn_iris",
        _j({"instances": [{IRIS_COLUMNS[0]: 1.0}, {IRIS_COLUMNS[1]: 2.0}]}),
    ),
    Case(
        "param-wrong-type",
        "custom_pyfunc_params",
        _j({"dataframe_records": _params_frame.to_dict(orient="records"), "params": {"multiplier": "abc"}}),
    ),
    Case(
        "params-not-object",
        "custom_pyfunc_params",
        _j({"dataframe_records": _params_frame.to_dict(orient="records"), "params": [1, 2]}),
    ),
    Case("params-missing-column", "custom_pyfunc_params", _j({"dataframe_records": [{"x": 1.0}]})),
    Case("predict-raises", "predict_raises", _j({"dataframe_split": {"columns": ["a"], "data": [[1]]}})),
    Case("type-hints-wrong-type", "pyfunc_type_hints", _j({"inputs": [1, 2]})),
    Case(
        "type-hints-not-inputs",
        "pyfunc_type_hints",
        _j({"dataframe_split": {"columns": ["x"], "data": [["a"]]}}),
    ),
    Case("llm-missing-messages-key", "llm_echo", _j({"prompt": "hello"})),
]

MISSING_CONTENT_TYPE = Case("missing-content-type", "sklearn_iris", _j({"dataframe_split": _split}), None)
