"""Signals as bytes on a pipe: the supervisor's event loop handles them, never a signal handler."""

from __future__ import annotations

import os
import signal
from types import FrameType, TracebackType
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)


class SignalPipe:
    """While entered, ``HANDLED`` signals only write their number to a pipe the loop selects on.

    Python's wakeup fd does the writing; the handler itself does nothing, so no work
    runs at an arbitrary point of the loop. Leaving restores the previous handlers.
    """

    def __init__(self) -> None:
        self._read_fd = -1
        self._write_fd = -1
        self._previous_fd = -1
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> SignalPipe:
        self._read_fd, self._write_fd = os.pipe()
        for fd in (self._read_fd, self._write_fd):
            os.set_blocking(fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, _note) for sig in HANDLED}
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)

    def fileno(self) -> int:
        return self._read_fd

    def received(self) -> list[int]:
        """The signals that arrived since the last call, oldest first."""
        signals: list[int] = []
        while True:
            try:
                data = os.read(self._read_fd, 512)
            except BlockingIOError:
                break
            if not data:
                break
            signals.extend(data)
        return signals


def _note(signum: int, frame: FrameType | None) -> None:
    """Does nothing: the wakeup fd has already carried the signal to the loop."""
