"""The same requests, good and bad, to MLflow's own scoring app and to kiln's: same answers.

Compared: the predictions of successes; for errors the status code, ``error_code``,
``error_class`` and ``sqlstate``, and that kiln's message begins with MLflow's (kiln adds
detail after it). Deliberate differences, asserted separately below:

* a request without Content-Type: MLflow answers 500 (an AttributeError), kiln 415;
* MLflow answers 415 in text/plain, kiln in JSON (``{"error_code": "BAD_REQUEST", ...}``)
  whose message begins with MLflow's text;
* 415 for content types is case-insensitive in kiln (``Application/JSON`` works);
* MLflow puts the stack trace of an exception inside ``predict`` in the body, kiln in its
  log (and in the body only with ``KILN_EXPOSE_TRACEBACKS=true``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.server.cases import BAD, GOOD, MISSING_CONTENT_TYPE, Case


def _post(url: str, case: Case) -> httpx.Response:
    return httpx.post(url + "/invocations", content=case.body, headers=case.headers, timeout=60)


def _json(answer: httpx.Response) -> Any:
    return json.loads(answer.text)  # the standard library accepts NaN, like MLflow's clients


@pytest.mark.parametrize("case", GOOD, ids=lambda c: c.id)
def test_successes_match_mlflow(
    case: Case, kiln_url: Callable[..., str], mlflow_url: Callable[[str], str]
) -> None:
    theirs = _post(mlflow_url(case.model), case)
    ours = _post(kiln_url(case.model), case)
    assert theirs.status_code == 200, theirs.text
    assert ours.status_code == 200, ours.text
    assert _json(ours) == _json(theirs)
    assert ours.headers["content-type"] == "application/json"


_SET_LITERAL = re.compile(r"\{'[^{}]*'\}")


def _same_sets(message: str) -> str:
    """MLflow prints sets of names, whose order changes between processes: sort them."""
    return _SET_LITERAL.sub(lambda m: "{" + ", ".join(sorted(m.group(0)[1:-1].split(", "))) + "}", message)


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_errors_match_mlflow(
    case: Case, kiln_url: Callable[..., str], mlflow_url: Callable[[str], str]
) -> None:
    theirs = _post(mlflow_url(case.model), case)
    ours = _post(kiln_url(case.model), case)
    assert ours.status_code == theirs.status_code, (theirs.text, ours.text)
    body = ours.json()
    assert set(body) >= {"error_code", "message", "error_class", "sqlstate"}
    if theirs.headers["content-type"] == "application/json":
        expected = theirs.json()
    else:  # MLflow's 415 is text/plain; kiln's is JSON, its message starting with MLflow's text
        assert theirs.status_code == 415
        expected = {"error_code": "BAD_REQUEST", "message": theirs.text}
        expected |= {"error_class": "INVALID_PARAMETER_VALUE", "sqlstate": "KAM00"}
    for field in ("error_code", "error_class", "sqlstate"):
        assert body[field] == expected[field], (field, theirs.text, ours.text)
    assert _same_sets(body["message"]).startswith(_same_sets(expected["message"])), (theirs.text, ours.text)


def test_missing_content_type_is_415_not_500(
    kiln_url: Callable[..., str], mlflow_url: Callable[[str], str]
) -> None:
    case = MISSING_CONTENT_TYPE
    assert _post(mlflow_url(case.model), case).status_code == 500
    ours = _post(kiln_url(case.model), case)
    assert ours.status_code == 415
    assert ours.json()["error_code"] == "BAD_REQUEST"
    assert "no Content-Type" in ours.json()["message"]
    assert "application/json" in ours.json()["message"]
