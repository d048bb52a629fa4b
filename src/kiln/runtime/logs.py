"""Logging for the runtime processes: one format, to stderr, so it all reaches the container log.

Behind nginx the workers and the zygote do not write to stderr themselves: their records go as
datagrams to the supervisor's log relay (``kiln.runtime.logrelay``), which writes what the
container's output takes and never blocks. A worker that wrote a traceback per failed request
to a stderr nobody read (a paused ``docker logs``, a Ctrl-S terminal) stalled once the pipe's
64 KiB were full; now a record the relay cannot take is dropped and counted, and the count rides
on the next record that gets through. The supervisor puts the relay's path in LOG_SOCKET_ENV.
"""

from __future__ import annotations

import logging
import socket
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
LOG_SOCKET_ENV = "KILN_RUNTIME_LOG_SOCKET"
"""Set by the supervisor for its children (not a user setting): the relay's datagram socket."""
MAX_RECORD = 60_000
"""Bytes of one record at most (a datagram's limit is the socket's send buffer)."""


class RelayHandler(logging.Handler):
    """Records as datagrams to the supervisor's relay; never blocks, drops and counts instead."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # logging's own contract: report, never raise
            self.handleError(record)
            return
        if self.dropped:
            line += f"\n({self.dropped} earlier log record(s) of this process dropped: output not read)"
        data = line.encode("utf-8", "replace")[:MAX_RECORD] + b"\n"
        try:
            self.sock.sendto(data, self.path)
        except OSError:  # the relay's queue is full (or it is gone, at the very end)
            self.dropped += 1
        else:
            self.dropped = 0

    def close(self) -> None:
        self.sock.close()
        super().close()


def configure_logging(level: str, relay: str | None = None) -> None:
    """Send every logger at ``level`` (a ``RuntimeSettings.log_level`` name) to stderr, or to the
    supervisor's log relay at ``relay`` (a path) when there is one."""
    handler: logging.Handler = RelayHandler(relay) if relay else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler], force=True)
