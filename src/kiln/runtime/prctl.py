"""Linux process controls the runtime relies on (``prctl``), each a no-op elsewhere."""

from __future__ import annotations

import contextlib
import signal
import sys

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int | bytes) -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have Linux send ``sig`` to this process when the thread that started it exits."""
    _prctl(_PR_SET_PDEATHSIG, int(sig))


def become_subreaper() -> None:
    """Adopt orphaned descendants (``PR_SET_CHILD_SUBREAPER``), as PID 1 does in a container.

    Forked workers are the zygote's children; if the zygote dies they are re-parented to
    the supervisor, which then reaps them like any child and replaces them as usual.
    """
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def set_process_name(name: str) -> None:
    """The name ``ps`` and ``/proc/PID/comm`` show (15 bytes at most): ``kiln-worker``, ``kiln-zygote``.

    A forked worker keeps the zygote's command line, so its name is what tells them apart.
    """
    _prctl(_PR_SET_NAME, name.encode()[:15])
