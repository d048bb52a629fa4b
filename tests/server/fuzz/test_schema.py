"""schemathesis generates requests from the server's own /openapi.json; answers must keep both promises."""

from __future__ import annotations

from tests.server.fuzz.report import examples
from tests.server.fuzz.schema import run_schema
from tests.server.fuzz.target import FuzzTarget


def test_schema_driven_requests_break_nothing(target: FuzzTarget) -> None:
    """Every answer is documented (status, Content-Type, headers, body schema), no 5xx but 504,
    every error JSON, no worker lost, and a correct request answered correctly afterwards."""
    report = run_schema(target, examples() // 4)
    print(report.summary())
    assert report.ok, report.summary()
