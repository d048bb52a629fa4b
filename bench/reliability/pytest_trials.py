"""Run test files with pytest and turn each test into a Trial: what it recorded, passed or failed as it did.

Tests record a row with ``tests.trials.record_trial`` (a ``record_property`` in the JUnit
XML); a test that records nothing is described by the caller (``Described``). A test
that fails keeps its recorded numbers and gets the first line of its failure appended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.reliability.table import Trial

REPO = Path(__file__).resolve().parents[2]
PROPERTY = "kiln_trial"
"""The property name tests.trials writes (bench does not import the tests)."""


@dataclass(frozen=True)
class Described:
    """A row for a test that records none: what it tries, and what its passing means."""

    area: str
    scenario: str
    outcome: str
    attempts: int = 1


def trials_from_tests(
    targets: Sequence[str],
    *,
    described: Mapping[str, Described] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 3600,
) -> list[Trial]:
    """Run ``pytest targets`` (node ids or files) in the repository; one Trial per test, in run order."""
    with tempfile.TemporaryDirectory(prefix="kiln-reliability-") as tmp:
        report = Path(tmp) / "junit.xml"
        command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "junit_family=xunit1",
            f"--junitxml={report}", *targets,
        ]  # fmt: skip
        try:
            finished = subprocess.run(
                command,
                cwd=REPO,
                env={**os.environ, **(env or {})},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return [_broken(targets, f"pytest did not finish within {timeout:.0f} s")]
        if not report.is_file():
            return [_broken(targets, f"pytest exited {finished.returncode}: {_tail(finished)}")]
        trials = [_trial(case, described or {}) for case in ElementTree.parse(report).iter("testcase")]
    return trials or [_broken(targets, f"no test ran: {_tail(finished)}")]


def _described(node: str, described: Mapping[str, Described]) -> Described | None:
    """The description for ``node``; keys may be relative to any directory above the test file
    (pytest's node ids depend on the rootdir it picked, which depends on where it was started)."""
    if node in described:
        return described[node]
    return next((d for key, d in described.items() if node.endswith("/" + key)), None)


def _trial(case: ElementTree.Element, described: Mapping[str, Described]) -> Trial:
    node = _node_id(case)
    recorded = next((p.get("value") for p in case.iter("property") if p.get("name") == PROPERTY), None)
    if recorded is not None:
        row = json.loads(recorded)
        area, scenario, attempts, outcome = row["area"], row["scenario"], row["attempts"], row["outcome"]
    else:
        known = _described(node, described) or Described("tests", node, "as the test asserts")
        area, scenario, attempts, outcome = known.area, known.scenario, known.attempts, known.outcome
    problem = next(
        (case.find(tag) for tag in ("failure", "error", "skipped") if case.find(tag) is not None), None
    )
    if problem is None:
        return Trial(area, scenario, attempts, outcome, passed=True)
    what = {"failure": "FAILED", "error": "ERROR", "skipped": "SKIPPED"}[problem.tag]
    message = (problem.get("message") or problem.text or "").strip().splitlines()
    detail = message[0][:300] if message else ""
    shown = outcome if recorded is not None else ""
    return Trial(
        area, scenario, attempts, f"{shown}{'; ' if shown else ''}{what} ({node}): {detail}", passed=False
    )


def _node_id(case: ElementTree.Element) -> str:
    """``tests/e2e/test_faults.py::test_x`` from JUnit's classname ``tests.e2e.test_faults``."""
    module = (case.get("classname") or "").replace(".", "/")
    return f"{module}.py::{case.get('name')}"


def _broken(targets: Sequence[str], why: str) -> Trial:
    return Trial("tests", " ".join(targets), 0, why, passed=False)


def _tail(finished: subprocess.CompletedProcess[str]) -> str:
    lines = (finished.stdout + finished.stderr).strip().splitlines()
    return " / ".join(lines[-5:])[:600]
