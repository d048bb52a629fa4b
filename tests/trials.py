"""Tests that double as reliability trials record what they tried and what they saw.

``record_trial(record_property, ...)`` stores one JSON property on the test's JUnit
XML entry; ``python -m bench.reliability`` runs those tests with ``--junitxml`` and
turns each entry into a row of docs/reliability.md, passed or failed as the test was.

``KILN_RELIABILITY_SECONDS`` (default 2) is how long each load phase of a fault drill
lasts; the report runs them longer than the test suite does.
"""

from __future__ import annotations

import json
import os
from typing import Callable

PROPERTY = "kiln_trial"


def load_seconds() -> float:
    """Seconds of load per phase of a fault drill (``KILN_RELIABILITY_SECONDS``, default 2)."""
    return float(os.environ.get("KILN_RELIABILITY_SECONDS", "2"))


def record_trial(
    record_property: Callable[[str, object], None], *, area: str, scenario: str, attempts: int, outcome: str
) -> None:
    """One row of the reliability report, stored through pytest's ``record_property`` fixture."""
    row = {"area": area, "scenario": scenario, "attempts": attempts, "outcome": outcome}
    record_property(PROPERTY, json.dumps(row))
