"""Parse ``docker build`` output (BuildKit's plain progress or the classic builder's) into steps.

The parser feeds a Progress as lines arrive and remembers each step's last lines,
so a failure can name the failing step and show the end of its log.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from kiln.backends.base import BuildStep
from kiln.progress import Progress

_BK_LINE = re.compile(r"^#(\d+) (.*)$")
_BK_HEADER = re.compile(r"^\[(?P<stage>[^\]]+)\] (?P<what>.*)$")
_BK_DONE = re.compile(r"^DONE (\d+(?:\.\d+)?)s$")
_BK_OUTPUT = re.compile(r"^\d+\.\d+ (.*)$")
_CLASSIC_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_CLASSIC_NOISE = re.compile(
    r"^ ---> (Running in \w+|[0-9a-f]{12}|\[Warning\].*)$|^Removing intermediate container"
)
TAIL_LINES = 25


@dataclass
class _Step:
    name: str
    internal: bool = False
    cached: bool = False
    failed: bool = False
    reported: bool = False
    seconds: float | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))


class BuildLogParser:
    """Consumes build output line by line (``feed``); ``steps`` and ``failure_tail`` afterwards."""

    def __init__(self, *, buildkit: bool, progress: Progress) -> None:
        self.buildkit = buildkit
        self._progress = progress
        self._steps: dict[str, _Step] = {}
        self._current: str | None = None  # classic builder: the step being run
        self._trailer: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if self.buildkit:
            self._feed_buildkit(line)
        else:
            self._feed_classic(line)

    @property
    def steps(self) -> tuple[BuildStep, ...]:
        return tuple(
            BuildStep(name=s.name, cached=s.cached, seconds=s.seconds)
            for s in self._steps.values()
            if not s.internal
        )

    @property
    def failed_step(self) -> str | None:
        for step in self._steps.values():
            if step.failed:
                return step.name
        if not self.buildkit and self._current is not None:
            return self._steps[self._current].name
        return None

    def failure_tail(self) -> str:
        """The failing step's last lines, then the builder's closing error lines."""
        lines: list[str] = []
        name = self.failed_step
        for step in self._steps.values():
            if step.name == name:
                lines.extend(step.lines)
        lines.extend(line for line in self._trailer if line not in lines)
        return "\n".join(lines[-(2 * TAIL_LINES) :])

    # --- BuildKit ------------------------------------------------------------------------

    def _feed_buildkit(self, line: str) -> None:
        match = _BK_LINE.match(line)
        if not match:
            if line.strip():
                self._trailer.append(line)
                self._progress.output(line)
            return
        key, rest = match.group(1), match.group(2)
        step = self._steps.get(key)
        if step is None:
            header = _BK_HEADER.match(rest)
            name = " ".join(rest.split())
            step = _Step(name=name, internal=bool(header and header.group("stage") == "internal"))
            # A FROM builds nothing: the base image is used as it is.
            step.cached = bool(header and header.group("what").startswith("FROM "))
            self._steps[key] = step
            return
        if rest == "CACHED":
            step.cached = True
            self._report(step)
            return
        done = _BK_DONE.match(rest)
        if done:
            step.seconds = float(done.group(1))
            self._report(step)
            return
        if rest.startswith("ERROR"):
            step.failed = True
            step.lines.append(rest)
            self._report(step)
            return
        if rest.startswith("sha256:"):
            return
        output = _BK_OUTPUT.match(rest)
        text = output.group(1) if output else rest
        self._report(step)
        step.lines.append(text)
        self._progress.output(text)

    def _report(self, step: _Step) -> None:
        if not step.reported and not step.internal:
            step.reported = True
            self._progress.step(step.name, cached=step.cached)

    # --- classic builder ---------------------------------------------------------------------

    def _feed_classic(self, line: str) -> None:
        match = _CLASSIC_STEP.match(line)
        if match:
            key = match.group(1)
            what = " ".join(match.group(3).split())
            self._steps[key] = _Step(name=f"[{key}/{match.group(2)}] {what}", cached=what.startswith("FROM "))
            self._current = key
            return
        step = self._steps.get(self._current) if self._current else None
        if step is not None and line.strip() == "---> Using cache":
            step.cached = True
            self._report(step)
            return
        if step is not None and _CLASSIC_NOISE.match(line):
            if not line.startswith(" ---> Running in"):
                self._report(step)
            return
        if line.startswith("Successfully built") or line.startswith("Successfully tagged"):
            self._current = None
            return
        if step is not None:
            self._report(step)
            step.lines.append(line)
        elif line.strip():
            self._trailer.append(line)
        if line.strip():
            self._progress.output(line)
        if _is_classic_error(line):
            if step is not None:
                step.failed = True
            self._trailer.append(line)


def _is_classic_error(line: str) -> bool:
    return (
        (line.startswith("The command ") and "returned a non-zero code" in line)
        or line.startswith("COPY failed")
        or line.startswith("ADD failed")
        or line.startswith("failed to ")
        or line.startswith("Error response from daemon")
    )
