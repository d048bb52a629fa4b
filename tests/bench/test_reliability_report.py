"""bench.reliability's plumbing: real pytest runs turned into rows, saved results rendered into a document."""

from __future__ import annotations

from pathlib import Path

from bench.reliability.__main__ import render, save
from bench.reliability.pytest_trials import Described, trials_from_tests
from bench.reliability.table import Section, Trial

TESTS = """
from tests.trials import record_trial


def test_recorded_and_passes(record_property):
    record_trial(record_property, area="faults", scenario="kill a worker", attempts=120, outcome="3 failed")


def test_recorded_then_fails(record_property):
    record_trial(record_property, area="faults", scenario="stop", attempts=7, outcome="exit 1")
    assert 1 == 2, "exit status was 1"


def test_described_elsewhere():
    pass


def test_skipped():
    import pytest

    pytest.skip("no Docker here")
"""


def test_each_test_becomes_a_row_as_it_ended(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"  # outside tests/, so that no other pytest run collects it
    probe.write_text(TESTS)
    described = {"probe.py::test_described_elsewhere": Described("image security", "config", "USER 10001")}
    trials = trials_from_tests([str(probe)], described=described)
    assert trials[0] == Trial("faults", "kill a worker", 120, "3 failed", passed=True)
    assert trials[1].scenario == "stop" and not trials[1].passed
    assert trials[1].outcome.startswith("exit 1; FAILED (") and "exit status was 1" in trials[1].outcome
    assert trials[2] == Trial("image security", "config", 1, "USER 10001", passed=True)
    assert not trials[3].passed and "SKIPPED" in trials[3].outcome and "no Docker here" in trials[3].outcome


def test_a_run_that_cannot_start_is_one_failed_row() -> None:
    [trial] = trials_from_tests(["tests/bench/no_such_test_file.py"])
    assert not trial.passed and trial.attempts == 0 and "no_such_test_file" in trial.outcome


def test_render_keeps_saved_sections_and_names_missing_ones(tmp_path: Path) -> None:
    section = Section(
        "Faults under load",
        (
            Trial("faults", "kill | a worker", 1200, "3 x 502", True),
            Trial("faults", "stop", 9, "exit 1", False),
        ),
        "Some notes.",
    )
    save(tmp_path, "faults", section, quick=True, seconds=42)

    def never(quick: bool) -> Section:
        raise AssertionError("render must not run sections")

    text = render({"faults": never, "security": never}, tmp_path)
    assert text.startswith("# Reliability\n")
    assert "| [Faults under load](#faults-under-load) | 2 | 1 | 1,209 |" in text
    assert ", quick, 42 s, kiln " in text
    assert "- `fuzz`: bench/reliability/fuzz.py is not there yet." in text
    assert "- `security`: not run yet." in text
    assert "## Faults under load\n" in text and "kill \\| a worker" in text and "Some notes." in text
    assert "## Not OK\n" in text and text.count("| faults | stop | 9 | exit 1 | **no** |") == 2
