"""Trial and Section: the rows each reliability module returns, and their Markdown rendering."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Trial:
    """One thing tried against kiln, how often, and what happened."""

    area: str
    """``fuzzing``, ``limits``, ``faults``, ``overload``, ``image security``, ``builder security``."""
    scenario: str
    """What was done, in a reader's words: 'SIGTERM the container during wrk load'."""
    attempts: int
    """How many times (requests sent, faults injected, builds tried)."""
    outcome: str
    """What happened, with numbers: '0 of 12 034 accepted requests failed; exit 0 after 1.2 s'."""
    passed: bool
    """Whether the outcome is what docs/reliability.md promises."""


@dataclass(frozen=True)
class Section:
    """One part of the report: a heading, its trials, and optional Markdown (e.g. a measurement table)."""

    title: str
    trials: tuple[Trial, ...]
    notes: str = ""


def render_trials(trials: Sequence[Trial]) -> str:
    """A Markdown table of ``trials``."""
    lines = ["| Area | What was tried | Times | What happened | OK |", "|---|---|---:|---|---|"]
    for t in trials:
        cells = (t.area, t.scenario, f"{t.attempts:,}", t.outcome, "yes" if t.passed else "**no**")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_section(section: Section) -> str:
    """A section's Markdown: heading, table, notes."""
    out = f"## {section.title}\n\n{render_trials(section.trials)}"
    if section.notes:
        out += "\n" + section.notes.strip() + "\n"
    return out


def section_main(run: Callable[[bool], Section], argv: Sequence[str] | None = None) -> int:
    """``python -m bench.reliability.<section> [--quick]``: run one section and print its Markdown."""
    args = sys.argv[1:] if argv is None else list(argv)
    print(render_section(run("--quick" in args)))
    return 0
