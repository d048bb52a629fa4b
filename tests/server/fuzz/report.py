"""What a fuzzing run did: requests sent, answers by status, and every broken promise."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.server.fuzz.target import Health

KEPT = 20
"""Broken promises kept with their request (the count covers all)."""
EXAMPLES_ENV = "KILN_FUZZ_EXAMPLES"


def examples(default: int = 1000) -> int:
    """hypothesis requests per server mode; schemathesis sends half as many per server mode
    (``examples() // 4`` positive and as many negative, for ``POST /invocations``).

    CI keeps the default; ``KILN_FUZZ_EXAMPLES=20000`` for a long run.
    """
    return int(os.environ.get(EXAMPLES_ENV, str(default)))


@dataclass
class FuzzReport:
    name: str
    requests: int = 0
    statuses: Counter[int | None] = field(default_factory=Counter)
    violations: int = 0
    examples: list[str] = field(default_factory=list)
    health: list[str] = field(default_factory=list)
    """What was wrong with the server afterwards (crashed workers, a wrong prediction)."""
    crashed: int = 0
    """Processes that died: workers, nginx, the supervisor."""
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def record(self, status: int | None, problems: list[str], request: str) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if problems:
            self.violations += 1
            if len(self.examples) < KEPT:
                self.examples.append(f"{'; '.join(problems)}\n    request: {request}")

    def finish(self, health: Health) -> FuzzReport:
        self.health, self.crashed = health.problems, health.crashed
        self.seconds = time.monotonic() - self.started
        return self

    @property
    def server_errors(self) -> int:
        """5xx answers other than the documented 504."""
        return sum(
            n for status, n in self.statuses.items() if status is not None and status >= 500 and status != 504
        )

    @property
    def ok(self) -> bool:
        return self.requests > 0 and not self.violations and not self.health

    def answers(self) -> str:
        """``'no answer: 3, 200: 12, 400: 900'`` (no answer: the client cut its upload and left)."""
        ordered = sorted(self.statuses.items(), key=lambda item: item[0] or 0)
        return ", ".join(f"{'no answer' if s is None else s}: {n:,}" for s, n in ordered)

    def summary(self) -> str:
        text = (
            f"{self.name}: {self.requests:,} requests in {self.seconds:.0f} s, {self.server_errors} 5xx "
            f"(besides 504), {self.violations} broken promises, {self.crashed} crashed processes; "
            f"answers {self.answers()}"
        )
        details = self.examples + [f"afterwards: {h}" for h in self.health]
        return "\n".join([text, *details])
