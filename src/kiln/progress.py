"""Build progress: a Progress protocol, plain log lines, and a live rich display for terminals."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Protocol

log = logging.getLogger("kiln.build")


class Progress(Protocol):
    """Receives what a build is doing; the CLI picks how to show it."""

    def phase(self, title: str) -> None:
        """A kiln phase starts (probe, resolve, write context, build, smoke test); the last one ends."""
        ...

    def step(self, name: str, *, cached: bool = False) -> None:
        """The builder started (or took from its cache) a Dockerfile step."""
        ...

    def detail(self, message: str) -> None:
        """A line worth showing under the current phase (e.g. "locked 45 packages")."""
        ...

    def output(self, line: str) -> None:
        """A line of the builder's or a tool's output."""
        ...

    def note(self, message: str) -> None:
        """Something the user should read: a decision, a warning, a result."""
        ...

    def finish(self, ok: bool) -> None:
        """The build ended."""
        ...


class LogProgress:
    """Plain lines through logging: one per phase, step and note; tool output at debug level."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger
        self._started = time.monotonic()
        self._phase: tuple[str, float] | None = None

    def phase(self, title: str) -> None:
        self._end_phase()
        self._phase = (title, time.monotonic())
        self._log.info("==> %s", title)

    def step(self, name: str, *, cached: bool = False) -> None:
        shown = name if len(name) <= 120 else name[:117] + "..."
        self._log.info("    %s%s", shown, "  (cached)" if cached else "")

    def detail(self, message: str) -> None:
        self._log.info("    %s", message)

    def output(self, line: str) -> None:
        self._log.debug("      %s", line.rstrip())

    def note(self, message: str) -> None:
        self._log.info("note: %s", message)

    def finish(self, ok: bool) -> None:
        self._end_phase()
        elapsed = time.monotonic() - self._started
        self._log.info("==> %s in %.1fs", "done" if ok else "failed", elapsed)

    def _end_phase(self) -> None:
        if self._phase is not None:
            title, started = self._phase
            self._log.debug("    (%s took %.1fs)", title, time.monotonic() - started)
            self._phase = None


class RichProgress:
    """A live display on a terminal: finished phases, the current one with its step and elapsed time."""

    def __init__(self, console: Any | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = console or Console(stderr=True)
        self._started = time.monotonic()
        self._done: list[tuple[str, float]] = []
        self._phase: tuple[str, float] | None = None
        self._step: str | None = None
        self._detail: str | None = None
        self._steps = 0
        self._cached = 0
        self._tail: deque[str] = deque(maxlen=4)
        self._live = Live(self, console=self._console, refresh_per_second=8, transient=True)
        self._live.start()

    def phase(self, title: str) -> None:
        self._end_phase()
        self._phase = (title, time.monotonic())
        self._step = self._detail = None
        self._tail.clear()

    def step(self, name: str, *, cached: bool = False) -> None:
        self._steps += 1
        self._cached += int(cached)
        self._step = name + ("  (cached)" if cached else "")
        self._tail.clear()

    def detail(self, message: str) -> None:
        self._detail = message

    def output(self, line: str) -> None:
        if line.strip():
            self._tail.append(line.rstrip()[:160])

    def note(self, message: str) -> None:
        self._console.print(f"[yellow]note:[/] {message}", highlight=False)

    def finish(self, ok: bool) -> None:
        self._end_phase()
        self._live.stop()
        for title, seconds in self._done:
            self._console.print(f"[green]✓[/] {title} [dim]{seconds:.1f}s[/]", highlight=False)
        elapsed = time.monotonic() - self._started
        mark = "[green]done[/]" if ok else "[red]failed[/]"
        self._console.print(f"{mark} in {elapsed:.1f}s", highlight=False)

    def _end_phase(self) -> None:
        if self._phase is not None:
            title, started = self._phase
            self._done.append((title, time.monotonic() - started))
            self._phase = None

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.text import Text

        rows: list[Any] = [Text.from_markup(f"[green]✓[/] {t} [dim]{s:.1f}s[/]") for t, s in self._done]
        if self._phase is not None:
            title, started = self._phase
            elapsed = time.monotonic() - started
            rows.append(Spinner("dots", text=Text.from_markup(f"{title} [dim]{elapsed:.0f}s[/]")))
            if self._detail and not self._step:
                rows.append(Text(f"   {self._detail[:140]}", style="cyan"))
            if self._step:
                counts = f"step {self._steps}" + (f", {self._cached} cached" if self._cached else "")
                rows.append(Text(f"   {counts}: {self._step[:120]}", style="cyan"))
            rows.extend(Text(f"     {line}", style="dim") for line in self._tail)
        return Group(*rows)


class QuietProgress:
    """Shows nothing (``--quiet``): errors still reach the user as exceptions."""

    def phase(self, title: str) -> None:
        log.debug("==> %s", title)

    def step(self, name: str, *, cached: bool = False) -> None:
        pass

    def detail(self, message: str) -> None:
        pass

    def output(self, line: str) -> None:
        pass

    def note(self, message: str) -> None:
        log.debug("note: %s", message)

    def finish(self, ok: bool) -> None:
        pass
