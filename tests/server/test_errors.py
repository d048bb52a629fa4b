"""Bad requests get the documented 4xx with a JSON body, and the server keeps answering."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.server.cases import BAD, GOOD, IRIS_COLUMNS, IRIS_ROWS, MISSING_CONTENT_TYPE, Case

GOOD_IRIS = next(c for c in GOOD if c.id == "split")

EXPECTED = {
    "missing-column": (400, "INVALID_PARAMETER_VALUE"),
    "param-wrong-type": (400, "INVALID_PARAMETER_VALUE"),
    "params-not-object": (400, "INVALID_PARAMETER_VALUE"),
    "malformed-json": (400, "BAD_REQUEST"),
    "json-list": (400, "BAD_REQUEST"),
    "json-scalar": (400, "BAD_REQUEST"),
    "two-format-keys": (400, "BAD_REQUEST"),
    "no-format-key": (400, "BAD_REQUEST"),
    "split-shaped-as-records": (400, "BAD_REQUEST"),
    "records-shaped-as-split": (400, "BAD_REQUEST"),
    "empty-json": (400, "BAD_REQUEST"),
    "empty-csv": (400, "BAD_REQUEST"),
    "invalid-utf8-json": (400, "BAD_REQUEST"),
    "invalid-utf8-csv": (400, "BAD_REQUEST"),
    "non-numeric-value": (400, "BAD_REQUEST"),
    "predict-raises": (400, "BAD_REQUEST"),
    "unknown-content-param": (415, "BAD_REQUEST"),
    "latin1-charset": (415, "BAD_REQUEST"),
    "text-plain": (415, "BAD_REQUEST"),
}


def _cases() -> Iterator[Case]:
    by_id = {c.id: c for c in BAD}
    yield from (by_id[name] for name in EXPECTED)
    yield MISSING_CONTENT_TYPE


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: c.id)
def test_bad_request_then_good_request(case: Case, kiln_url: Callable[..., str]) -> None:
    url = kiln_url(case.model) + "/invocations"
    status, code = EXPECTED.get(case.id, (415, "BAD_REQUEST"))
    with httpx.Client() as client:  # one keep-alive connection for both requests
        answer = client.post(url, content=case.body, headers=case.headers)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert body["error_code"] == code
        assert body["message"]
        assert "stack_trace" not in body
        if case.model == "sklearn_iris":
            good = client.post(url, content=GOOD_IRIS.body, headers=GOOD_IRIS.headers)
            assert good.status_code == 200
            assert good.json() == {"predictions": [0, 1, 2]}


def test_415_lists_the_accepted_types(kiln_url: Callable[..., str]) -> None:
    answer = httpx.post(
        kiln_url("sklearn_iris") + "/invocations", content=b"x", headers={"Content-Type": "application/xml"}
    )
    assert answer.status_code == 415
    message = answer.json()["message"]
    for accepted in ("application/json", "text/csv", "application/vnd.apache.parquet", "charset=utf-8"):
        assert accepted in message
    assert "application/xml" in message


def test_content_type_case_is_ignored(kiln_url: Callable[..., str]) -> None:
    answer = httpx.post(
        kiln_url("sklearn_iris") + "/invocations",
        content=GOOD_IRIS.body,
        headers={"Content-Type": "Application/JSON; Charset=UTF-8"},
    )
    assert answer.status_code == 200


def test_missing_column_names_it(kiln_url: Callable[..., str]) -> None:
    body = {"dataframe_split": {"columns": IRIS_COLUMNS[:3], "data": [r[:3] for r in IRIS_ROWS]}}
    answer = httpx.post(kiln_url("sklearn_iris") + "/invocations", json=body)
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "petal width (cm)" in answer.json()["message"]


def test_body_over_the_limit_is_413(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("sklearn_iris", max_body_size=1024) + "/invocations"
    big = b'{"dataframe_split": {"columns": [], "data": []}, "pad": "' + b"x" * 2000 + b'"}'
    with httpx.Client() as client:
        answer = client.post(url, content=big, headers={"Content-Type": "application/json"})
        assert answer.status_code == 413
        assert answer.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert "1024" in answer.json()["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            for start in range(0, len(big), 500):
                yield big[start : start + 500]

        chunked = client.post(url, content=chunks(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413
        assert chunked.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    good = httpx.post(url, content=GOOD_IRIS.body, headers=GOOD_IRIS.headers)
    assert good.status_code == 200
    assert good.json() == {"predictions": [0, 1, 2]}


def test_model_error_trace_goes_to_the_log_not_the_client(
    kiln_url: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    body = {"dataframe_split": {"columns": ["a"], "data": [[1]]}}
    with caplog.at_level(logging.WARNING, logger="kiln.server"):
        answer = httpx.post(kiln_url("predict_raises") + "/invocations", json=body)
    assert answer.status_code == 400
    payload = answer.json()
    assert payload["error_code"] == "BAD_REQUEST"
    assert "deliberate error from predict" in payload["message"]
    assert "stack_trace" not in payload
    assert "Traceback" not in payload["message"]
    assert "Traceback (most recent call last)" in caplog.text
    assert "raises_model.py" in caplog.text


def test_trace_reaches_the_client_when_the_operator_asks(kiln_url: Callable[..., str]) -> None:
    body = {"dataframe_split": {"columns": ["a"], "data": [[1]]}}
    answer = httpx.post(kiln_url("predict_raises", expose_tracebacks=True) + "/invocations", json=body)
    assert answer.status_code == 400
    assert "raises_model.py" in answer.json()["stack_trace"]


def test_an_error_quoting_a_huge_input_is_cut(kiln_url: Callable[..., str]) -> None:
    # A CSV whose header names no expected column: MLflow's schema error quotes the whole input.
    header = ",".join(f"wrong_column_{i}" for i in range(3_000))
    body = header + "\n" + ",".join("1" for _ in range(3_000)) + "\n"
    response = httpx.post(
        kiln_url("sklearn_iris") + "/invocations",
        content=body,
        headers={"Content-Type": "text/csv"},
        timeout=60,
    )
    assert response.status_code == 400
    payload = response.json()
    assert payload["error_code"] == "INVALID_PARAMETER_VALUE"
    assert len(payload["message"]) < 4200
    assert payload["message"].endswith("more characters cut)")


def test_error_classes_are_mlflows() -> None:
    """Every code gets the error_class and sqlstate MLflow 3's MlflowException derives for it."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import ErrorCode

    from kiln.server.errors import ERROR_CLASSES

    for code in [value.name for value in ErrorCode.DESCRIPTOR.values]:
        theirs = MlflowException("x", error_code=ErrorCode.Value(code))
        expected = (theirs.error_class, theirs.sqlstate) if theirs.error_class is not None else None
        assert ERROR_CLASSES.get(code) == expected, code
