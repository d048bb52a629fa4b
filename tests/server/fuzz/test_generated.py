"""hypothesis throws generated requests at the real runtime; no promise of the protocol may break."""

from __future__ import annotations

from tests.server.cases import IRIS_COLUMNS
from tests.server.fuzz.generated import run_generated
from tests.server.fuzz.report import examples
from tests.server.fuzz.target import FuzzTarget


def test_generated_requests_break_nothing(target: FuzzTarget) -> None:
    """No 5xx but the documented 504, every error JSON, no answer missing, no worker lost,
    and the model's own prediction for a correct request afterwards."""
    report = run_generated(target, IRIS_COLUMNS, examples())
    print(report.summary())
    assert report.ok, report.summary()
