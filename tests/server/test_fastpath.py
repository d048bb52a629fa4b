"""The fast paths give exactly what MLflow's parsing and schema enforcement give.

Random ``dataframe_split``/``dataframe_records`` payloads go through kiln's FastFrame and
through MLflow's ``dataframe_from_parsed_json`` + ``_enforce_schema``; whenever the fast
path accepts a payload, the two DataFrames must be equal (values, dtypes, column order,
index). Over HTTP, the fast predict path's answers are checked against MLflow's in
test_differential.py.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from mlflow.models.utils import _enforce_schema
from mlflow.types import ColSpec, Schema
from mlflow.utils.proto_json_utils import dataframe_from_parsed_json

from kiln.server.fastframe import FastFrame

NAMES = ["a", "b", "c"]
SCHEMAS = {t: Schema([ColSpec(t, n) for n in NAMES]) for t in ("double", "float", "long")}

cells = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(["1.5", "x", ""]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True, allow_infinity=True)
)
rows = st.one_of(  # half all-numeric (what the fast path takes), half anything
    st.lists(st.lists(numbers, min_size=3, max_size=3), min_size=1, max_size=5),
    st.lists(st.lists(cells, min_size=3, max_size=3), min_size=1, max_size=5),
)


def _mlflow(value: Any, orient: str, schema: Schema) -> pd.DataFrame | None:
    try:
        return _enforce_schema(dataframe_from_parsed_json(value, orient, schema), schema)
    except Exception:
        return None


ACCEPTED: list[bool] = []


def _check(ours: pd.DataFrame | None, theirs: pd.DataFrame | None) -> None:
    ACCEPTED.append(ours is not None)
    if ours is None:
        return  # MLflow's own path runs
    assert theirs is not None, "the fast path accepted what MLflow rejects"
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)


@pytest.mark.parametrize("type_", list(SCHEMAS))
@settings(max_examples=150, deadline=None)
@given(data=rows, order=st.permutations(NAMES), with_index=st.booleans())
def test_split_matches_mlflow(type_: str, data: list[list[Any]], order: list[str], with_index: bool) -> None:
    schema = SCHEMAS[type_]
    fast = FastFrame.prepare(schema)
    assert fast is not None
    value: dict[str, Any] = {"columns": order, "data": data}
    if with_index:
        value["index"] = [f"r{i}" for i in range(len(data))]
    _check(fast.split(value), _mlflow(value, "split", schema))


@pytest.mark.parametrize("type_", list(SCHEMAS))
@settings(max_examples=150, deadline=None)
@given(data=rows, order=st.permutations(NAMES))
def test_records_match_mlflow(type_: str, data: list[list[Any]], order: list[str]) -> None:
    schema = SCHEMAS[type_]
    fast = FastFrame.prepare(schema)
    assert fast is not None
    records = [dict(zip(order, row)) for row in data]
    _check(fast.records(records), _mlflow(records, "records", schema))


def test_the_random_payloads_often_took_the_fast_path() -> None:
    if not ACCEPTED:
        pytest.skip("run together with the property tests above, which do the counting")
    assert sum(ACCEPTED) > 100, f"only {sum(ACCEPTED)} of {len(ACCEPTED)} random payloads were accepted"


@settings(max_examples=100, deadline=None)
@given(data=rows, order=st.permutations(NAMES))
def test_sklearn_frames_differ_only_in_the_label_dtype(data: list[list[Any]], order: list[str]) -> None:
    """For scikit-learn models the labels are an object Index; everything else is MLflow's frame."""
    schema = SCHEMAS["double"]
    fast = FastFrame.prepare(schema, loader_module="mlflow.sklearn")
    assert fast is not None
    value = {"columns": order, "data": data}
    ours = fast.split(value)
    assume(ours is not None)
    assert ours is not None
    assert ours.columns.dtype == object
    theirs = _mlflow(value, "split", schema)
    assert theirs is not None
    assert list(ours.columns) == list(theirs.columns)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True, check_column_type=False)


def test_common_payloads_take_the_fast_path() -> None:
    fast = FastFrame.prepare(SCHEMAS["double"])
    assert fast is not None
    assert fast.split({"columns": ["c", "a", "b"], "data": [[1.0, 2, 3.5]]}) is not None
    assert fast.records([{"a": 1.0, "b": 2.0, "c": 3.0}]) is not None


@pytest.mark.parametrize(
    "schema",
    [
        Schema([ColSpec("double", "a"), ColSpec("string", "b")]),
        Schema([ColSpec("integer", "a")]),
        Schema([ColSpec("double")]),
        None,
    ],
    ids=["mixed-types", "int32", "unnamed", "none"],
)
def test_other_schemas_have_no_fast_frame(schema: Schema | None) -> None:
    assert FastFrame.prepare(schema) is None


COLUMNS: dict[str, pd.Series] = {
    "int8": pd.Series([1, 2], dtype="int8"),
    "int32": pd.Series([1, 2], dtype="int32"),
    "int64": pd.Series([1, 2], dtype="int64"),
    "uint64": pd.Series([1, 2], dtype="uint64"),
    "float32": pd.Series([0.5, 1.5], dtype="float32"),
    "float64": pd.Series([0.5, float("nan")], dtype="float64"),
    "bool": pd.Series([True, False]),
    "object-str": pd.Series(["a", "b"], dtype=object),
    "object-num": pd.Series([1, 2], dtype=object),
    "string": pd.Series(["a", None], dtype="string"),
    "str": pd.Series(["a", "b"], dtype="str"),
    "object-bytes": pd.Series([b"a", b"b"], dtype=object),
    "datetime-ns": pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02"])).astype("datetime64[ns]"),
    "datetime-s": pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02"])).astype("datetime64[s]"),
    "category": pd.Series(["a", "b"], dtype="category"),
}


TYPES = ["boolean", "integer", "long", "float", "double", "string", "binary", "datetime"]
ACCEPTED_PAIRS = {
    ("boolean", "bool"),
    ("integer", "int32"),
    ("long", "int64"),
    ("float", "float32"),
    ("double", "float64"),
    ("datetime", "datetime-ns"),
    *(("string", c) for c in ("object-str", "object-num", "object-bytes", "string", "str")),
    *(("binary", c) for c in ("object-str", "object-num", "object-bytes", "string", "str")),
}


def test_accepted_dtypes_are_left_unchanged_by_mlflow() -> None:
    """The fast path takes exactly the dtypes that MLflow's enforcement returns as they are."""
    from mlflow.models.utils import _enforce_mlflow_datatype
    from mlflow.types import DataType

    from kiln.server.fastpath import _accepts

    accepted = {(t, c) for t in TYPES for c, s in COLUMNS.items() if _accepts(DataType[t], s.dtype)}
    assert accepted == ACCEPTED_PAIRS
    for type_, column in sorted(accepted):
        series = COLUMNS[column]
        enforced = _enforce_mlflow_datatype("col", series.copy(), DataType[type_])
        pd.testing.assert_series_equal(enforced, series, check_exact=True, obj=f"{column} as {type_}")
