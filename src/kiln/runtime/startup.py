"""Time to the first answer, by phase: how long this process has existed, and the ready line's text."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable


def process_age(pid: int | str = "self") -> float:
    """Seconds since the process started (its interpreter included), from ``/proc/PID/stat``.

    The kernel counts a process's start in clock ticks since boot; ``CLOCK_BOOTTIME`` is
    the same clock. 0.0 where that cannot be read (not Linux).
    """
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii").read()  # noqa: SIM115 - short read
        started = int(stat[stat.rindex(")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def describe(total: float, phases: Iterable[tuple[str, float]], last: str) -> str:
    """``2.31 s (supervisor 0.21 s, model imports 0.60 s, ...)`` for the ready line.

    ``last`` names what took the rest of ``total`` after ``phases`` (the first worker's start).
    """
    phases = list(phases)
    phases.append((last, total - sum(seconds for _, seconds in phases)))
    parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases if seconds > 0.0005)
    return f"{total:.2f} s ({parts})" if parts else f"{total:.2f} s"
