"""The zygote: load the model once, then fork workers that share it copy-on-write.

``python -m kiln.runtime.zygote --control-fd N --supervisor-pid P``. The zygote imports
what serving needs, loads the model and prepares its predictor (``lifespan.preload``),
freezes its heap (``gc.freeze()``: the collector then never touches, and so never copies,
the pages of objects made before the fork; while loading, the collector runs rarely, see
``LOAD_GC_THRESHOLD``), and tells the supervisor ``loaded``. From
then on each ``fork`` request (with the slot's listening socket and a readiness pipe as
file descriptors) becomes a worker in a few milliseconds, with no model load; the zygote
reports each fork's pid and, when a worker exits, its exit status, so the supervisor
keeps every policy (readiness, replacement, crash loops, OOM reports, draining).

A model that is not safe to fork -- loading it started threads (a fork keeps only the
thread that forks, and whatever locks the others held), or created a CUDA context (which
does not survive a fork) -- makes the zygote report ``unsafe`` and exit: with
``preload_model=auto`` the supervisor then starts workers that load the model each.

The messages are JSON objects on a SOCK_SEQPACKET socket pair (one message per packet).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kiln.runtime import startup
from kiln.runtime.logs import LOG_SOCKET_ENV, configure_logging
from kiln.runtime.prctl import die_with_parent, set_process_name
from kiln.runtime.processes import reap
from kiln.runtime.signals import HANDLED, SignalPipe
from kiln.settings import RuntimeSettings

logger = logging.getLogger(__name__)

MODULE = "kiln.runtime.zygote"
PROCESS_NAME = "kiln-zygote"
MAX_MESSAGE = 4096
LOAD_FAILED = 3
LOAD_GC_THRESHOLD = 100_000
"""The collector's first threshold while the zygote imports and loads (Python's default is 700).
Importing pandas, scikit-learn and MLflow allocates millions of objects that all live on, and a
collection every 700 net allocations (a full one each time the heap grew by a quarter) costs about
0.2 s of a 2 s load for nothing. The collector still runs, so a load that makes cyclic garbage
stays bounded; what little is left is frozen with the rest instead of collected first (a full
collection of the loaded heap takes 0.1 s and found 64 objects for an sklearn model), as
``gc.freeze``'s documentation advises for pre-fork servers."""
"""Exit status when the model could not be loaded (as a worker's whose app never started)."""


def zygote_command(python: str, *, control_fd: int, supervisor_pid: int) -> list[str]:
    """The command line the supervisor starts the zygote with."""
    return [python, "-m", MODULE, "--control-fd", str(control_fd), "--supervisor-pid", str(supervisor_pid)]


# --- the supervisor's side -----------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One message from the zygote: ``loaded``, ``unsafe``, ``forked`` or ``exited``."""

    kind: str
    slot: int = 0
    pid: int = 0
    code: int = 0
    reason: str = ""
    phases: tuple[tuple[str, float], ...] = ()


def control_pair() -> tuple[socket.socket, socket.socket]:
    """``(supervisor's end, zygote's end)``; the supervisor's end does not block."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    return ours, theirs


def request_fork(control: socket.socket, slot: int, listener: socket.socket, ready_fd: int) -> None:
    """Ask for a worker in ``slot`` on ``listener``, writing to ``ready_fd`` once it serves."""
    message = json.dumps({"fork": slot}).encode()
    socket.send_fds(control, [message], [listener.fileno(), ready_fd])


def receive(control: socket.socket) -> Iterator[Event | None]:
    """The zygote's messages waiting on ``control``; None when its end is closed."""
    while True:
        try:
            data = control.recv(MAX_MESSAGE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            yield None
            return
        fields: dict[str, Any] = json.loads(data)
        phases = tuple((str(k), float(v)) for k, v in fields.pop("phases", {}).items())
        yield Event(phases=phases, **fields)


# --- the zygote's side ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    set_process_name(PROCESS_NAME)
    die_with_parent(signal.SIGTERM)
    if os.getppid() != args.supervisor_pid:
        return 0  # the supervisor died before the request above took effect
    settings = RuntimeSettings.from_env(os.environ)
    configure_logging(settings.log_level, os.environ.get(LOG_SOCKET_ENV))
    control = socket.socket(fileno=args.control_fd)
    phases = {"start": startup.process_age()}
    thresholds = gc.get_threshold()
    gc.set_threshold(LOAD_GC_THRESHOLD, *thresholds[1:])
    try:
        phases.update(_load(settings))
    except Exception as exc:
        _log_failure(exc)
        return LOAD_FAILED
    finally:
        gc.set_threshold(*thresholds)
    hazards = fork_hazards()
    if hazards and settings.preload_model == "auto":
        _send(control, {"kind": "unsafe", "reason": "; ".join(hazards)})
        return 0
    for hazard in hazards:
        logger.warning("forking workers anyway (KILN_PRELOAD_MODEL=on), although %s", hazard)
    gc.freeze()
    _send(control, {"kind": "loaded", "phases": phases})
    return _serve_forks(settings, control)


def _load(settings: RuntimeSettings) -> dict[str, float]:
    """Import what a worker runs, then load the model; the seconds each took."""
    started = time.monotonic()
    import uvicorn  # noqa: F401 - imported once here, not in every worker

    from kiln.runtime import worker
    from kiln.server import app  # noqa: F401
    from kiln.server.lifespan import preload

    worker.preimport()
    imported = time.monotonic()
    preload(settings)
    return {"imports": imported - started, "load": time.monotonic() - imported}


def _log_failure(exc: Exception) -> None:
    from kiln.errors import KilnError
    from kiln.server.lifespan import log_failure

    if isinstance(exc, KilnError):
        log_failure(exc)
    else:
        logger.exception("the scoring server cannot start: %r", exc)


def fork_hazards() -> list[str]:
    """Why forking this process now would be unsafe; [] when it is safe."""
    hazards = []
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        hazards.append(f"loading the model started {len(others)} thread(s) ({', '.join(others[:5])})")
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    with contextlib.suppress(Exception):
        if cuda is not None and cuda.is_initialized():
            hazards.append("loading the model created a CUDA context, which a forked process cannot use")
    return hazards


def _serve_forks(settings: RuntimeSettings, control: socket.socket) -> int:
    """Fork a worker per request and report exits, until SIGTERM or the supervisor goes away."""
    children: set[int] = set()
    with SignalPipe() as signal_pipe, selectors.EpollSelector() as selector:
        selector.register(signal_pipe, selectors.EVENT_READ)
        selector.register(control, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is control:
                    data, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 2)
                    if not data:
                        return _stop(children)  # the supervisor is gone
                    slot = int(json.loads(data)["fork"])
                    inherited = (control.fileno(), signal_pipe.fileno(), selector.fileno())
                    pid = _fork(settings, slot, fds, inherited)
                    children.add(pid)
                    _send(control, {"kind": "forked", "slot": slot, "pid": pid})
                    continue
                for signum in signal_pipe.received():
                    if signum in (signal.SIGTERM, signal.SIGINT):
                        return _stop(children)
                for pid, code in reap():
                    children.discard(pid)
                    _send(control, {"kind": "exited", "pid": pid, "code": code})


def _fork(settings: RuntimeSettings, slot: int, fds: list[int], close: tuple[int, ...]) -> int:
    socket_fd, ready_fd = fds
    # Signals wait until each side has its own handlers: the zygote's only write to a pipe the
    # worker must not write to, and a SIGTERM meant for the worker must not be swallowed.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    pid = os.fork()
    if pid == 0:  # the worker
        try:
            signal.set_wakeup_fd(-1)
            for sig in HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for fd in close:
                os.close(fd)
            from kiln.runtime import worker

            worker.run(settings, socket_fd, ready_fd)
        finally:
            os._exit(1)  # run never returns; this is for an error before it
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(socket_fd)
    os.close(ready_fd)
    logger.debug("forked worker %d (slot %d)", pid, slot)
    return pid


def _stop(children: set[int]) -> int:
    """Pass SIGTERM on to the workers (they drain) and exit; the supervisor adopts and reaps them."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return 0


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the supervisor is gone: nobody left to tell
        control.send(json.dumps(message).encode())


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--supervisor-pid", type=int, required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
