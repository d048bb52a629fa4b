"""The supervisor: nginx and N uvicorn workers in, an exit code out.

It binds the workers' listening socket, starts nginx and the workers, logs ``ready``
when the first worker has loaded the model, restarts workers that die (a crash loop
stops everything), reaps every child (it is PID 1 in a container), and on SIGTERM or
SIGINT drains: nginx finishes in-flight requests (SIGQUIT), then the workers stop
(SIGTERM), all within ``grace_period``; whatever is left then is killed.

Exit codes: 0 after a requested stop; 1 when a worker failed before the model was
loaded, nginx died, or workers kept crashing.
"""

from __future__ import annotations

import collections
import logging
import os
import resource
import selectors
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from kiln.errors import ServeError
from kiln.runtime import layout as runtime_layout
from kiln.runtime import nginx, processes
from kiln.runtime.cpus import available_cpus
from kiln.runtime.layout import RuntimeLayout
from kiln.runtime.processes import Child, describe_exit
from kiln.runtime.settings import RuntimeSettings
from kiln.server.metrics import mark_worker_dead, prepare_metrics_dir

logger = logging.getLogger(__name__)

CRASH_LIMIT = 5
CRASH_WINDOW = 60.0
"""Workers dying this many times within this many seconds is a crash loop: stop everything."""


@dataclass(frozen=True)
class Plan:
    """What to run: decided once at start, then only read."""

    settings: RuntimeSettings
    layout: RuntimeLayout
    workers: int
    nginx_binary: str | None
    """None: no nginx; the workers listen on ``settings.port`` themselves."""
    python: str = sys.executable
    crash_limit: int = CRASH_LIMIT
    crash_window: float = CRASH_WINDOW
    nginx_conf: str = field(default="", repr=False)
    """The rendered nginx.conf ("" without nginx)."""


def make_plan(settings: RuntimeSettings) -> Plan:
    """Resolve the worker count (CPU quota when unset) and the nginx binary; render nginx.conf."""
    layout = RuntimeLayout(Path(os.path.abspath(settings.runtime_dir)))
    cpus = available_cpus()
    workers = settings.workers or cpus
    if settings.disable_nginx:
        return Plan(settings, layout, workers, nginx_binary=None)
    binary = nginx.find_nginx(settings.nginx_binary)
    config = nginx.nginx_config(
        settings,
        layout,
        workers=workers,
        cpus=cpus,
        open_files=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        user="root root" if os.geteuid() == 0 else None,
    )
    return Plan(settings, layout, workers, nginx_binary=binary, nginx_conf=nginx.render_nginx_conf(config))


def run(plan: Plan) -> int:
    """Serve until stopped; returns the process exit code. Must run in the main thread."""
    lock = runtime_layout.prepare(plan.layout)
    try:
        if plan.nginx_binary:
            check_port_free(plan.settings.port)
            plan.layout.nginx_conf.write_text(plan.nginx_conf, encoding="utf-8")
        listener = bind_listener(plan)
        try:
            return _Supervisor(plan, listener, _worker_env(plan)).run()
        finally:
            listener.close()
            if listener.family == socket.AF_UNIX:
                plan.layout.socket.unlink(missing_ok=True)
    finally:
        lock.close()


def bind_listener(plan: Plan) -> socket.socket:
    """The workers' socket, bound but not listening: connections are refused until a worker is ready.

    asyncio (and uvloop) call ``listen()`` when a worker starts serving, i.e. after its
    lifespan has loaded the model; before that nginx gets "connection refused" and
    answers 503 instead of queueing requests behind a model that is still loading.
    """
    address: str | tuple[str, int]
    if plan.nginx_binary:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = where = str(plan.layout.socket)
    else:
        # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (uvicorn #3149).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        address = ("0.0.0.0", plan.settings.port)
        where = f"0.0.0.0:{plan.settings.port}"
    _bind(sock, address, where)
    if sock.family == socket.AF_UNIX:
        os.chmod(plan.layout.socket, 0o660)
    return sock


def check_port_free(port: int) -> None:
    """Fail early, and clearly, when nginx could not bind ``port`` (it would retry, then exit)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _bind(probe, ("0.0.0.0", port), f"0.0.0.0:{port}")


def _bind(sock: socket.socket, address: str | tuple[str, int], where: str) -> None:
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = "pick another --port / KILN_PORT" if isinstance(address, tuple) else None
        raise ServeError(f"cannot listen on {where}: {exc.strerror}", hint=hint) from exc


def _worker_env(plan: Plan) -> dict[str, str]:
    env = {**os.environ, **plan.settings.to_env()}
    if plan.settings.metrics:
        env.update(prepare_metrics_dir(str(plan.layout.root)))
    return env


class _Supervisor:
    """The event loop: signals and readiness pipes in, process starts and signals out."""

    def __init__(self, plan: Plan, listener: socket.socket, worker_env: Mapping[str, str]) -> None:
        self.plan = plan
        self.listener = listener
        self.worker_env = worker_env
        self.children: dict[int, Child] = {}
        self.selector = selectors.DefaultSelector()
        self.served = False
        self.deaths: collections.deque[float] = collections.deque()
        self.stopping = False
        self.exit_code = 0
        self.deadline = 0.0
        self.killed = False

    # --- the loop --------------------------------------------------------------------
    def run(self) -> int:
        wakeup_r, wakeup_w = os.pipe()
        for fd in (wakeup_r, wakeup_w):
            os.set_blocking(fd, False)
        self.selector.register(wakeup_r, selectors.EVENT_READ)
        previous = _install_signals(wakeup_w)
        try:
            self._start()
            while self.children or not self.stopping:
                self._wait(wakeup_r)
                for pid, code in processes.reap():
                    self._on_exit(pid, code)
                self._advance_stop()
            return self.exit_code
        finally:
            self._kill_all()
            _restore_signals(previous)
            for child in self.children.values():
                child.close_pipe()  # the processes are being killed; their pipes are not read again
            self.selector.close()
            os.close(wakeup_r)
            os.close(wakeup_w)

    def _start(self) -> None:
        plan = self.plan
        where = f"port {plan.settings.port}"
        if plan.nginx_binary:
            logger.info(
                "starting nginx on %s and %d uvicorn worker(s) on %s (runtime dir %s)",
                where, plan.workers, plan.layout.socket, plan.layout.root,
            )  # fmt: skip
            self._add(processes.start_nginx(nginx.nginx_command(plan.nginx_binary, plan.layout), os.environ))
        else:
            logger.info("starting %d uvicorn worker(s) on %s, without nginx", plan.workers, where)
        for _ in range(plan.workers):
            self._start_worker()

    def _wait(self, wakeup_fd: int) -> None:
        for key, _ in self.selector.select(self._timeout()):
            if key.fd == wakeup_fd:
                for signum in _drain(wakeup_fd):
                    self._on_signal(signum)
            else:
                child = key.data
                assert isinstance(child, Child)
                self._on_pipe(child)

    def _timeout(self) -> float | None:
        if not self.stopping:
            return None  # signals (SIGCHLD included) and pipes wake the loop
        if self.killed:
            return 1.0
        return max(0.0, self.deadline - time.monotonic())

    # --- events ----------------------------------------------------------------------
    def _on_signal(self, signum: int) -> None:
        if signum not in (signal.SIGTERM, signal.SIGINT):
            return  # SIGCHLD: the reaping after every wake-up handles it
        name = signal.Signals(signum).name
        if not self.stopping:
            logger.info(
                "%s received: finishing in-flight requests (up to %g s), then stopping",
                name, self.plan.settings.grace_period,
            )  # fmt: skip
            self._stop(0, graceful=True)
        elif signum == signal.SIGINT and not self.killed:
            logger.warning("SIGINT received again: killing nginx and the workers now")
            self._kill_all()

    def _on_pipe(self, child: Child, *, exited: bool = False) -> None:
        if child.kind == "nginx":
            self._forward_nginx_output(child, exited)
        else:
            self._on_worker_pipe(child, exited)

    def _on_worker_pipe(self, child: Child, exited: bool) -> None:
        """One byte: the worker is ready; end of file: it is exiting. Either way the pipe is done."""
        data = child.read_pipe()
        if data == b"" and not exited:
            return
        self._close_pipe(child)
        if data and exited:
            child.ready = True  # ready, then dead before we looked: only the exit is news
        elif data:
            self._on_ready(child)

    def _forward_nginx_output(self, child: Child, exited: bool) -> None:
        """nginx's access log lines to our stdout; after nginx exited, everything it left."""
        data = child.read_pipe()
        while data:
            processes.forward_lines(child, data)
            data = child.read_pipe() if exited else b""
        if data is None or exited:
            processes.forward_lines(child, b"", flush=True)
            self._close_pipe(child)

    def _close_pipe(self, child: Child) -> None:
        if child.pipe_fd is not None:
            self.selector.unregister(child.pipe_fd)
            child.close_pipe()

    def _on_ready(self, child: Child) -> None:
        child.ready = True
        ready = sum(1 for c in self._workers() if c.ready)
        logger.info("worker %d ready (%d/%d)", child.pid, ready, self.plan.workers)
        if not self.served and not self.stopping:
            self.served = True
            via = "nginx" if self.plan.nginx_binary else "uvicorn"
            logger.info(
                "ready: serving model %s on http://0.0.0.0:%d (%s)",
                self.plan.settings.model_dir, self.plan.settings.port, via,
            )  # fmt: skip

    def _on_exit(self, pid: int, code: int) -> None:
        child = self.children.pop(pid, None)
        if child is None:
            return  # an orphan re-parented to us (PID 1): reaped, nothing else to do
        child.process.returncode = code
        if child.pipe_fd is not None:
            self._on_pipe(child, exited=True)
        if child.kind == "nginx":
            self._on_nginx_exit(child, code)
        else:
            self._on_worker_exit(child, code)

    def _on_nginx_exit(self, child: Child, code: int) -> None:
        if self.stopping:
            logger.info("nginx stopped (%s)", describe_exit(code))
            return
        logger.error("nginx exited unexpectedly (%s); see its messages above. Stopping.", describe_exit(code))
        self._stop(1, graceful=False)

    def _on_worker_exit(self, child: Child, code: int) -> None:
        if self.plan.settings.metrics:
            mark_worker_dead(child.pid)
        if self.stopping:
            logger.info("worker %d stopped (%s)", child.pid, describe_exit(code))
        elif not self.served:
            logger.error(
                "worker %d exited (%s) before the model was loaded: the model could not be loaded "
                "or the server could not start; its error is above. Stopping.",
                child.pid, describe_exit(code),
            )  # fmt: skip
            self._stop(1, graceful=False)
        elif child.ready and code == 0:
            # A worker retires itself (e.g. after a request timed out in predict): not a crash.
            logger.info("worker %d stopped on its own after draining; starting a new one", child.pid)
            self._start_worker()
        elif self._crash_loop():
            logger.error(
                "worker %d exited (%s): %d workers died within %g s, stopping instead of restarting",
                child.pid, describe_exit(code), self.plan.crash_limit, self.plan.crash_window,
            )  # fmt: skip
            self._stop(1, graceful=False)
        else:
            logger.warning("worker %d died (%s); starting a new one", child.pid, describe_exit(code))
            self._start_worker()

    def _crash_loop(self) -> bool:
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths and self.deaths[0] < now - self.plan.crash_window:
            self.deaths.popleft()
        return len(self.deaths) >= self.plan.crash_limit

    # --- stopping --------------------------------------------------------------------
    def _stop(self, exit_code: int, *, graceful: bool) -> None:
        """Begin stopping: nginx drains first (graceful), or everything is asked to stop at once."""
        if self.stopping:
            return
        self.stopping = True
        self.exit_code = exit_code
        self.deadline = time.monotonic() + self.plan.settings.grace_period
        for child in self._workers():
            if not child.ready:
                child.send(signal.SIGKILL)  # nothing in flight while the model is still loading
        nginx_proc = self._nginx()
        if nginx_proc is not None:
            nginx_proc.send(signal.SIGQUIT if graceful else signal.SIGTERM)
        if nginx_proc is None or not graceful:
            self._stop_workers()

    def _advance_stop(self) -> None:
        if not self.stopping:
            return
        if self._nginx() is None:
            self._stop_workers()  # nginx has drained: nothing new can reach the workers
        if not self.killed and self.children and time.monotonic() >= self.deadline:
            logger.warning(
                "grace period of %g s is over: killing %s",
                self.plan.settings.grace_period,
                ", ".join(f"{c.kind} {c.pid}" for c in self.children.values()),
            )
            self._kill_all()

    def _stop_workers(self) -> None:
        for child in self._workers():
            child.send(signal.SIGTERM)

    def _kill_all(self) -> None:
        if self.children:
            self.killed = True
        for child in self.children.values():
            child.send(signal.SIGKILL)

    # --- children --------------------------------------------------------------------
    def _start_worker(self) -> None:
        child = processes.start_worker(self.plan.python, self.listener, self.worker_env)
        self._add(child)
        logger.debug("started worker %d", child.pid)

    def _add(self, child: Child) -> None:
        self.children[child.pid] = child
        assert child.pipe_fd is not None
        self.selector.register(child.pipe_fd, selectors.EVENT_READ, child)

    def _workers(self) -> list[Child]:
        return [c for c in self.children.values() if c.kind == "worker"]

    def _nginx(self) -> Child | None:
        return next((c for c in self.children.values() if c.kind == "nginx"), None)


_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)


_Handlers = dict[signal.Signals, Any]


def _install_signals(wakeup_fd: int) -> tuple[int, _Handlers]:
    """Signals only write their number to ``wakeup_fd``; the loop acts on them, outside the handler."""
    previous_fd = signal.set_wakeup_fd(wakeup_fd, warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, _note) for sig in _HANDLED}
    return previous_fd, previous


def _restore_signals(previous: tuple[int, _Handlers]) -> None:
    previous_fd, handlers = previous
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    signal.set_wakeup_fd(previous_fd)


def _note(signum: int, frame: FrameType | None) -> None:
    """The handler does nothing itself: the wakeup fd carries the signal to the loop."""


def _drain(fd: int) -> list[int]:
    signals: list[int] = []
    while True:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            break
        if not data:
            break
        signals.extend(data)
    return signals
