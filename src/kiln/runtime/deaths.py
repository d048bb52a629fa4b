"""Judging a child's death: was it the kernel's OOM killer, and do deaths come too fast (a crash loop)?"""

from __future__ import annotations

import collections
import signal
import time

from kiln.runtime.memory import MemoryCgroup, find_memory_cgroup


class Deaths:
    """What the supervisor knows about the deaths of its workers (and zygotes) so far."""

    def __init__(self, limit: int, window: float, memory: MemoryCgroup | None = None) -> None:
        self.limit = limit
        self.window = window
        self.memory = memory if memory is not None else find_memory_cgroup()
        self.oom_kills = self.memory.oom_kills()
        self._times: collections.deque[float] = collections.deque()

    def out_of_memory(self, code: int) -> str:
        """``was killed by SIGKILL, likely out of memory (...)`` when the cgroup's OOM-kill count rose.

        Each death takes one kill off the count: the kernel sometimes kills two workers
        within milliseconds (the hog, then a worker still loading), and both are reaped at once.
        """
        if code != -signal.SIGKILL:
            return ""
        counted = self.memory.oom_kills()
        if counted is None or self.oom_kills is None or counted <= self.oom_kills:
            return ""
        self.oom_kills += 1
        return (
            f"was killed by SIGKILL, likely out of memory ({self.memory.describe_limit()}; "
            "give the container more memory or run fewer workers with KILN_WORKERS)"
        )

    def crash_loop(self) -> bool:
        """Count one more death; True when ``limit`` of them fell within ``window`` seconds."""
        now = time.monotonic()
        self._times.append(now)
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
        return len(self._times) >= self.limit
