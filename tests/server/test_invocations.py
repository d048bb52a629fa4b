"""Every request shape of the scoring protocol answers what the model's own ``predict`` says."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.server.cases import GOOD, IRIS_COLUMNS, IRIS_ROWS, Case, iris_frame


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("case", GOOD, ids=lambda c: c.id)
def test_answer_is_the_models_own_prediction(
    case: Case, kiln_url: Callable[..., str], pyfunc: Callable[[str], Any]
) -> None:
    assert case.expect is not None
    expected = _normalise(case.expect(pyfunc(case.model)))
    answer = httpx.post(kiln_url(case.model) + "/invocations", content=case.body, headers=case.headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == expected


def test_llm_answer_is_not_wrapped(kiln_url: Callable[..., str]) -> None:
    answer = httpx.post(
        kiln_url("llm_echo") + "/invocations",
        json={"messages": [{"role": "user", "content": "kiln"}], "max_tokens": 3},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert "predictions" not in body
    assert body["choices"][0]["message"]["content"] == "nlik"
    assert body["max_tokens"] == 3


def test_large_batch_in_any_column_order(kiln_url: Callable[..., str], pyfunc: Callable[[str], Any]) -> None:
    frame = iris_frame().sample(n=500, replace=True, random_state=7).reset_index(drop=True)
    frame = frame[[IRIS_COLUMNS[2], IRIS_COLUMNS[0], IRIS_COLUMNS[3], IRIS_COLUMNS[1]]]
    expected = pyfunc("sklearn_iris").predict(frame).tolist()
    for key, value in (
        ("dataframe_split", frame.to_dict(orient="split", index=False)),
        ("dataframe_records", frame.to_dict(orient="records")),
    ):
        answer = httpx.post(kiln_url("sklearn_iris") + "/invocations", json={key: value})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected}


def test_keep_alive_connection_serves_many_requests(kiln_url: Callable[..., str]) -> None:
    body = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
    with httpx.Client(base_url=kiln_url("sklearn_iris")) as client:
        answers = [client.post("/invocations", json=body) for _ in range(50)]
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
