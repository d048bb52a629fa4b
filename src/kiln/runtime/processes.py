"""The supervisor's children: starting nginx and workers, signalling them, reaping every exit."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from kiln.errors import ServeError
from kiln.runtime import worker

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Child:
    """A process the supervisor started; ``ready_fd`` is the read end of a worker's readiness pipe."""

    kind: str
    """``nginx`` or ``worker``."""
    process: subprocess.Popen[bytes]
    ready_fd: int | None = None
    ready: bool = False
    signalled: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, sig: int) -> None:
        """Send ``sig`` unless it was sent already or the process is gone."""
        if sig in self.signalled:
            return
        self.signalled.add(sig)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def close_pipe(self) -> bytes:
        """Close the readiness pipe and return what was left in it."""
        if self.ready_fd is None:
            return b""
        fd, self.ready_fd = self.ready_fd, None
        try:
            os.set_blocking(fd, False)
            return os.read(fd, 16)
        except BlockingIOError:
            return b""
        finally:
            os.close(fd)


def start_nginx(command: Sequence[str], env: Mapping[str, str]) -> Child:
    logger.debug("starting %s", " ".join(command))
    return Child("nginx", _popen(command, env, pass_fds=()))


def start_worker(python: str, listener: socket.socket, env: Mapping[str, str]) -> Child:
    """A worker serving on ``listener``; it writes to the returned child's pipe once ready."""
    read_fd, write_fd = os.pipe()
    command = worker.worker_command(
        python, socket_fd=listener.fileno(), ready_fd=write_fd, supervisor_pid=os.getpid()
    )
    try:
        process = _popen(command, env, pass_fds=(listener.fileno(), write_fd))
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return Child("worker", process, ready_fd=read_fd)


def reap() -> list[tuple[int, int]]:
    """``(pid, exit code)`` of every child that has exited, orphans included (we may be PID 1).

    The exit code is negative for a signal, as in ``Popen.returncode``.
    """
    exited = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        exited.append((pid, os.waitstatus_to_exitcode(status)))
    return exited


def describe_exit(code: int) -> str:
    """``status 3`` or ``signal SIGKILL``."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def _popen(
    command: Sequence[str], env: Mapping[str, str], pass_fds: Sequence[int]
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            list(command),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            pass_fds=tuple(pass_fds),
            # Own session: a Ctrl+C in the terminal reaches only the supervisor, which then
            # drains nginx and the workers in order instead of all of them dying at once.
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )
    except OSError as exc:
        raise ServeError(f"cannot start {command[0]!r}: {exc.strerror or exc}") from exc


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux SIGTERM the child when the supervisor dies.

    nginx has no option for this, and a supervisor killed with SIGKILL would otherwise
    leave nginx and the workers running. Only used without other threads, where
    ``preexec_fn`` is safe; everything it needs is loaded before the fork.
    """
    if not sys.platform.startswith("linux") or threading.active_count() != 1:
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigterm = int(signal.SIGTERM)

    def set_parent_death_signal() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return set_parent_death_signal
