"""One uvicorn worker: ``python -m kiln.runtime.worker --socket-fd N --ready-fd M --supervisor-pid P``.

The supervisor binds the worker's listening socket (behind nginx its own unix socket) and
passes it down; the worker serves the scoring app on it and writes one byte to the
readiness pipe once the model is loaded. A worker is either started with this command
(it loads the model itself) or forked by the zygote (``kiln.runtime.zygote``) with the
model already loaded; both end in ``run``.
Settings come from the environment the supervisor hands over (``RuntimeSettings.to_env``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import math
import os
import signal
import socket
import sys
from types import FrameType

from kiln.runtime.logs import LOG_SOCKET_ENV, configure_logging
from kiln.runtime.nginx import WORKER_KEEPALIVE_TIMEOUT
from kiln.runtime.prctl import die_with_parent, set_process_name
from kiln.settings import RuntimeSettings

READY = b"r"
MODULE = "kiln.runtime.worker"
NEVER_READY = 3
"""Exit status of a worker whose app never became ready (some uvicorn releases exit 0 then)."""
PROCESS_NAME = "kiln-worker"
"""What ``ps`` and ``/proc/PID/comm`` call every worker, started or forked."""


def worker_command(python: str, *, socket_fd: int, ready_fd: int, supervisor_pid: int) -> list[str]:
    """The command line the supervisor starts a worker with."""
    return [
        python,
        "-m",
        MODULE,
        "--socket-fd",
        str(socket_fd),
        "--ready-fd",
        str(ready_fd),
        "--supervisor-pid",
        str(supervisor_pid),
    ]


class ReadyNotifier:
    """``on_ready`` for the app: tells the supervisor, once, that this worker can serve."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self.notified = False

    def __call__(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        self.notified = True
        try:
            os.write(fd, READY)
        finally:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _exit_with_supervisor(args.supervisor_pid)
    # A SIGTERM before uvicorn installs its handlers (or re-raised by uvicorn after it
    # drained) ends the worker cleanly instead of with a signal status.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    settings = RuntimeSettings.from_env(os.environ)
    configure_logging(settings.log_level, os.environ.get(LOG_SOCKET_ENV))
    run(settings, args.socket_fd, args.ready_fd)
    return 0  # not reached


def run(settings: RuntimeSettings, socket_fd: int, ready_fd: int) -> None:
    """Serve on the inherited socket until stopped, then exit the process (never returns)."""
    set_process_name(PROCESS_NAME)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    sock = socket.socket(fileno=socket_fd)
    _set_nodelay(sock)
    notifier = ReadyNotifier(ready_fd)
    try:
        serve(settings, sock, notifier)
    except SystemExit as exc:  # uvicorn after a failed start, or _exit_cleanly after draining
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:
        code = 0
    if not notifier.notified and code == 0:
        code = NEVER_READY
    _exit_now(code)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown.

    The worker has drained and the app's shutdown has run; tearing down the model's
    libraries (pandas, sklearn, torch...) module by module can take seconds, which only
    delays a restart or ``docker stop``.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def serve(settings: RuntimeSettings, sock: socket.socket, on_ready: ReadyNotifier) -> None:
    """Run the scoring app on ``sock`` until SIGTERM, draining for up to ``grace_period``."""
    import uvicorn

    from kiln.server.app import create_app
    from kiln.server.protocols import http_protocol

    behind_nginx = sock.family == socket.AF_UNIX
    config = uvicorn.Config(
        app=create_app(settings, on_ready=on_ready),
        loop="uvloop" if _installed("uvloop") else "asyncio",
        http=http_protocol("httptools" if _installed("httptools") else "h11"),
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.grace_period),
        timeout_keep_alive=WORKER_KEEPALIVE_TIMEOUT,
        # nginx logs every request; without nginx uvicorn does.
        access_log=not behind_nginx,
        log_config=None,
        log_level=settings.log_level,
        server_header=False,
        # Only nginx can reach the unix socket, so its X-Forwarded-* headers are trusted.
        forwarded_allow_ips="*" if behind_nginx else None,
    )
    if not behind_nginx:  # clients reach the worker directly: it keeps nginx's limits itself
        from kiln.server.client_limits import limited

        config.http = limited(
            config.http, max_header_size=settings.max_header_size, client_timeout=settings.client_timeout
        )
    uvicorn.Server(config).run(sockets=[sock])


def preimport() -> None:
    """Import what ``serve`` imports, ahead of time: the zygote does it once for all its forks."""
    import uvicorn  # noqa: F401

    from kiln.server import app, client_limits, protocols  # noqa: F401

    for module in ("uvloop", "httptools", "uvicorn.protocols.http.httptools_impl", "uvicorn.loops.uvloop"):
        if _installed(module.partition(".")[0]):
            importlib.import_module(module)


def _set_nodelay(sock: socket.socket) -> None:
    """Nagle off for TCP (uvicorn issue #3149: an inherited socket otherwise stalls ~40 ms per request).

    ``socket.socket(fileno=...)`` reads the protocol back from the kernel, so asyncio
    sees ``IPPROTO_TCP`` and sets TCP_NODELAY on each accepted connection; the listener
    gets it too, and Linux copies it to accepted sockets.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _exit_with_supervisor(supervisor_pid: int) -> None:
    """Ask Linux to SIGTERM this worker if the supervisor dies, so no worker outlives it."""
    die_with_parent(signal.SIGTERM)
    if os.getppid() != supervisor_pid:
        sys.exit(0)  # the supervisor died before the request above took effect


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--socket-fd", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--supervisor-pid", type=int, required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
