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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from kiln.errors import ServeError
from kiln.runtime import worker

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Child:
    """A process the supervisor started, with the read end of a pipe from it.

    A worker writes one byte to its pipe once the model is loaded. nginx's stdout is
    its pipe: nginx re-opens ``/dev/stdout`` for the access log, which fails (and stops
    nginx) when the supervisor's stdout belongs to another user, e.g. a file or pipe
    made by root for a process that runs as UID 10001; a pipe the supervisor made always
    belongs to the right user.
    """

    kind: str
    """``nginx``, ``worker`` or ``zygote``."""
    pid: int
    pipe_fd: int | None = None
    slot: int = 0
    """A worker's place, 0..N-1: behind nginx, which socket it accepts on; its replacement takes it."""
    ready: bool = False
    signalled: set[int] = field(default_factory=set)
    pending: bytearray = field(default_factory=bytearray)
    """Output read from the pipe that does not end with a newline yet."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    """The Popen of a child started with exec; None for a worker the zygote forked."""

    def exited(self, code: int) -> None:
        """Note the exit status the supervisor reaped (so Popen does not wait for it again)."""
        if self.process is not None:
            self.process.returncode = code

    def send(self, sig: int, *, again: bool = False) -> None:
        """Send ``sig`` unless it was sent already (``again``: send it anyway) or the process is gone."""
        if sig in self.signalled and not again:
            return
        self.signalled.add(sig)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def read_pipe(self) -> bytes | None:
        """What is in the pipe now: b"" when nothing is, None at end of file."""
        if self.pipe_fd is None:
            return None
        try:
            return os.read(self.pipe_fd, 65536) or None
        except BlockingIOError:
            return b""

    def close_pipe(self) -> None:
        if self.pipe_fd is not None:
            fd, self.pipe_fd = self.pipe_fd, None
            os.close(fd)


def forward_lines(child: Child, data: bytes, out_fd: int = 1, *, flush: bool = False) -> None:
    """Copy whole lines of ``data`` to ``out_fd`` (stdout); keep a partial last line for later.

    Lines stay whole, so they do not interleave with the workers' own output.
    """
    child.pending += data
    end = len(child.pending) if flush else child.pending.rfind(b"\n") + 1
    if end:
        _write_all(out_fd, bytes(child.pending[:end]))
        del child.pending[:end]


def forward_output(child: Child, exited: bool) -> bool:
    """A child's output lines to stdout (``forward_lines``); after it exited, everything it left.
    True when its pipe is done (end of file, or the child exited)."""
    data = child.read_pipe()
    while data:
        forward_lines(child, data)
        data = child.read_pipe() if exited else b""
    if data is None or exited:
        forward_lines(child, b"", flush=True)
        return True
    return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError:
            return  # stdout is gone: nothing left to tell
        view = view[written:]


def start_nginx(command: Sequence[str], env: Mapping[str, str]) -> Child:
    """nginx with its stdout on a pipe the supervisor reads (see ``Child``)."""
    logger.debug("starting %s", " ".join(command))
    with _pipe_from_child() as (read_fd, write_fd):
        process = _popen(command, env, pass_fds=(), stdout=write_fd)
    return Child("nginx", process.pid, pipe_fd=read_fd, process=process)


def start_worker(python: str, listener: socket.socket, env: Mapping[str, str], slot: int = 0) -> Child:
    """Worker ``slot`` serving on ``listener``; it writes to the returned child's pipe once ready."""
    with _pipe_from_child() as (read_fd, write_fd):
        command = worker.worker_command(
            python, socket_fd=listener.fileno(), ready_fd=write_fd, supervisor_pid=os.getpid()
        )
        process = _popen(command, env, pass_fds=(listener.fileno(), write_fd))
    return Child("worker", process.pid, pipe_fd=read_fd, slot=slot, process=process)


def start_zygote(python: str, control: socket.socket, env: Mapping[str, str]) -> Child:
    """The zygote (``kiln.runtime.zygote``), talking to the supervisor over ``control``.

    Its ``pipe_fd`` is the supervisor's end of the control socket, not a pipe: the loop
    reads the zygote's messages from it.
    """
    from kiln.runtime import zygote

    command = zygote.zygote_command(python, control_fd=control.fileno(), supervisor_pid=os.getpid())
    process = _popen(command, env, pass_fds=(control.fileno(),))
    return Child("zygote", process.pid, process=process)


@contextlib.contextmanager
def _pipe_from_child() -> Iterator[tuple[int, int]]:
    """A pipe for a child started inside the block: the child keeps the only write end.

    The read end is non-blocking for the supervisor's loop, and closed if the start fails.
    """
    read_fd, write_fd = os.pipe()
    try:
        yield read_fd, write_fd
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    os.set_blocking(read_fd, False)


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
    command: Sequence[str], env: Mapping[str, str], pass_fds: Sequence[int], stdout: int | None = None
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            list(command),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
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
