"""A Progress that records what it is told, for asserting on build progress."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordingProgress:
    phases: list[str] = field(default_factory=list)
    steps: list[tuple[str, bool]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    finished: list[bool] = field(default_factory=list)

    def phase(self, title: str) -> None:
        self.phases.append(title)

    def step(self, name: str, *, cached: bool = False) -> None:
        self.steps.append((name, cached))

    def detail(self, message: str) -> None:
        self.details.append(message)

    def output(self, line: str) -> None:
        self.lines.append(line)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def finish(self, ok: bool) -> None:
        self.finished.append(ok)
