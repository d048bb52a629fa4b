"""nginx's logs to stdout and stderr through a datagram socket: a slow log reader never stalls a request.

nginx writes every access-log and error-log line as a syslog datagram to a unix socket
the supervisor binds (``access_log syslog:server=unix:<runtime dir>/log.sock``). nginx's
end is non-blocking: when the socket's queue is full (the supervisor is not reading fast
enough) nginx drops the line and goes on serving, where a file or pipe would block its
whole event loop (``kiln serve`` with its stdout on a pipe nobody read answered ~950
requests, then hung on every one).

The supervisor strips the syslog header, and queues access lines for stdout and error
lines for stderr. It writes only what a descriptor takes without blocking (a pipe nobody
reads, a terminal paused with Ctrl-S, a slow ``docker logs`` reader), keeps at most
``QUEUE_LIMIT`` bytes waiting per output, drops and counts the lines beyond that, and says
how many it dropped once the output moves again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import socket
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 1024 * 1024
"""Bytes of log lines waiting per output before new lines are dropped."""
CHUNK = 4096
"""At most PIPE_BUF bytes per write: a pipe that polls writable takes them without blocking."""
ACCESS_TAG = "access"
ERROR_TAG = "error"
_SYSLOG = re.compile(rb"^<(\d{1,3})>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (\w+): ", re.ASCII)
_SEVERITIES = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")


class Output:
    """Lines waiting for one descriptor, written when it can take them without blocking."""

    def __init__(self, fd: int, limit: int = QUEUE_LIMIT) -> None:
        self.fd = fd
        self.limit = limit
        self.waiting = bytearray()
        self.dropped = 0
        """Lines dropped since the last report."""
        self.total_dropped = 0
        self.closed = False
        self._always_writable = _is_regular_file(fd)

    def add(self, line: bytes) -> None:
        if self.closed:
            return
        if len(self.waiting) + len(line) > self.limit:
            self.dropped += 1
            self.total_dropped += 1
            return
        self.waiting += line

    def flush(self) -> None:
        """Write what the descriptor takes now; report dropped lines once everything is out."""
        while self.waiting and not self.closed and self._writable():
            try:
                written = os.write(self.fd, self.waiting[:CHUNK])
            except BlockingIOError:
                return
            except OSError:
                self.closed = True  # stdout is gone: nothing left to tell
                self.waiting.clear()
                return
            del self.waiting[:written]
            if not self.waiting and self.dropped:
                dropped, self.dropped = self.dropped, 0
                logger.warning(
                    "%d nginx log line(s) dropped: the container's output was not read fast enough",
                    dropped,
                )

    @property
    def pending(self) -> bool:
        return bool(self.waiting) and not self.closed

    def _writable(self) -> bool:
        if self._always_writable:
            return True
        try:
            ready = select.select([], [self.fd], [], 0)[1]
        except (OSError, ValueError):
            return True  # not pollable: write and see
        return bool(ready)


class LogRelay:
    """The datagram socket nginx logs to, and the two outputs its lines go to."""

    def __init__(self, path: Path, stdout: int = 1, stderr: int = 2) -> None:
        path.unlink(missing_ok=True)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(str(path))
            # Large enough for a burst while the supervisor is busy; the kernel caps it.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            os.chmod(path, 0o660)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.access = Output(stdout)
        self.errors = Output(stderr)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> None:
        """Take every datagram waiting, queue its line, and write what the outputs take."""
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            self._route(data)
        self.flush()

    def flush(self) -> None:
        self.access.flush()
        self.errors.flush()

    @property
    def pending(self) -> bool:
        return self.access.pending or self.errors.pending

    def close(self) -> None:
        self.read()
        self.sock.close()
        self.path.unlink(missing_ok=True)

    def _route(self, data: bytes) -> None:
        match = _SYSLOG.match(data)
        if match is None:
            self.errors.add(data.rstrip(b"\n") + b"\n")
            return
        message = data[match.end() :].rstrip(b"\n")
        if match.group(2).decode() == ACCESS_TAG:
            self.access.add(message + b"\n")
        else:
            severity = _SEVERITIES[int(match.group(1)) & 7]
            self.errors.add(b"nginx [" + severity.encode() + b"] " + message + b"\n")


def _is_regular_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False
