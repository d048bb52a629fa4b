"""The supervisor: nginx and N uvicorn workers in, an exit code out.

It binds each worker's own unix socket (without nginx: one TCP socket they all share), starts nginx
(answering 503 itself until a worker is ready) and the zygote, which loads the model once and forks
the workers (or, without preloading, the workers, which load it each: ``kiln.runtime.spawner``),
reloads nginx to proxy to each worker's socket as it comes up, logs ``ready`` (with each start
phase's time) once nginx proxies, restarts workers that die, each on its predecessor's socket (a
crash loop stops everything; a worker the OOM killer chose is reported as out of memory), reaps
every child (PID 1 in a container, a subreaper on a host), copies nginx's log lines to stdout and
stderr without ever blocking (``kiln.runtime.logrelay``), and on SIGTERM or SIGINT drains: nginx
finishes in-flight requests (SIGQUIT), then the workers stop (SIGTERM), all within
``grace_period``; the rest is then killed.

Exit codes: 0 after a requested stop; 1 when a worker failed before the model was loaded, nginx
died, or workers kept crashing.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import time

from kiln.runtime import healthcheck, nginx, processes, startup
from kiln.runtime import layout as runtime_layout
from kiln.runtime.deaths import Deaths
from kiln.runtime.logrelay import LogRelay
from kiln.runtime.plan import Plan, bind_listener, check_port_free
from kiln.runtime.prctl import become_subreaper
from kiln.runtime.processes import Child, describe_exit
from kiln.runtime.proxycheck import ProxyCheck
from kiln.runtime.signals import SignalPipe
from kiln.runtime.spawner import Spawner, worker_env
from kiln.runtime.zygote import receive
from kiln.server.metrics import mark_worker_dead

logger = logging.getLogger(__name__)

LOG_RETRY = 0.1  # seconds between tries to write log lines an output could not take


def run(plan: Plan) -> int:
    """Serve until stopped; returns the process exit code. Must run in the main thread."""
    lock = runtime_layout.prepare(plan.layout, plan.workers)
    become_subreaper()
    relay = None
    try:
        if plan.nginx_binary:
            check_port_free(plan.settings.host, plan.settings.port)
            plan.layout.nginx_conf.write_text(plan.nginx_loading_conf, encoding="utf-8")
            relay = LogRelay(plan.layout.log_socket)
            shared = None  # each worker slot binds its own socket at its first start and keeps it
        else:
            shared = bind_listener(plan)
        try:
            return _Supervisor(plan, Spawner(plan, worker_env(plan), shared), relay).run()
        finally:
            if shared is not None:
                shared.close()
            if relay is not None:
                relay.close()
            for path in plan.layout.worker_sockets(plan.workers):
                path.unlink(missing_ok=True)
    finally:
        lock.close()


class _Supervisor:
    """The event loop: signals and readiness pipes in, process starts and signals out."""

    def __init__(self, plan: Plan, spawner: Spawner, relay: LogRelay | None) -> None:
        self.plan = plan
        self.spawner = spawner
        self.relay = relay
        self.started = time.monotonic() - startup.process_age()
        """When this process started (its interpreter included), on the monotonic clock."""
        self.phases: list[tuple[str, float]] = []
        self.children: dict[int, Child] = {}
        self.selector = selectors.DefaultSelector()
        self.served = False
        self.listening: set[int] = set()  # slots whose first worker was ready: nginx's upstream
        self.deaths = Deaths(plan.crash_limit, plan.crash_window)
        self.stopping = False
        self.exit_code = 0
        self.deadline = 0.0
        self.killed = False

    # --- the loop --------------------------------------------------------------------
    def run(self) -> int:
        with SignalPipe() as signal_pipe:
            self.selector.register(signal_pipe, selectors.EVENT_READ)
            if self.relay is not None:
                self.selector.register(self.relay, selectors.EVENT_READ, self.relay)
            try:
                self._start()
                while self.children or not self.stopping:
                    self._wait(signal_pipe)
                    for pid, code in processes.reap():
                        self._on_exit(pid, code)
                    self._advance_stop()
                return self.exit_code
            finally:
                self._kill_all()
                for child in self.children.values():
                    if child.kind != "zygote":  # its pipe is the spawner's control socket
                        child.close_pipe()  # the processes are being killed; their pipes are not read again
                self.selector.close()
                self.spawner.close()

    def _start(self) -> None:
        plan = self.plan
        where = nginx.listen_address(plan.settings.host, plan.settings.port)
        if plan.nginx_binary:
            logger.info(
                "starting nginx on %s and %d uvicorn worker(s), each on its own socket %s (runtime dir %s)",
                where, plan.workers, plan.layout.root / "uvicorn-<n>.sock", plan.layout.root,
            )  # fmt: skip
            self._add(processes.start_nginx(nginx.nginx_command(plan.nginx_binary, plan.layout), os.environ))
        else:
            logger.info("starting %d uvicorn worker(s) on %s, without nginx", plan.workers, where)
        self.phases.append(("supervisor", time.monotonic() - self.started))
        if plan.preload:
            logger.info("loading the model once, then forking the workers from it (KILN_PRELOAD_MODEL=%s)",
                        plan.settings.preload_model)  # fmt: skip
            self._start_zygote()
        for slot in range(plan.workers):
            self._start_worker(slot)

    def _wait(self, signal_pipe: SignalPipe) -> None:
        for key, _ in self.selector.select(self._timeout()):
            if key.fileobj is signal_pipe:
                for signum in signal_pipe.received():
                    self._on_signal(signum)
            elif isinstance(key.data, LogRelay):
                key.data.read()
            elif isinstance(key.data, ProxyCheck):
                self._on_proxied(key.data)
            else:
                child = key.data
                assert isinstance(child, Child)
                self._on_pipe(child)
        if self.relay is not None and self.relay.pending:
            self.relay.flush()

    def _timeout(self) -> float | None:
        if self.relay is not None and self.relay.pending:
            return LOG_RETRY  # lines wait for an output that could not take them: try again soon
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
        elif child.kind == "zygote":
            self._on_zygote_messages(child)
        else:
            self._on_worker_pipe(child, exited)

    def _on_zygote_messages(self, child: Child) -> None:
        control = self.spawner.control
        if control is None:
            return
        for event in list(receive(control)):
            if event is None:
                self._close_zygote_link(child)
            elif event.kind == "exited":
                self._on_exit(event.pid, event.code)
            else:
                for worker in self.spawner.on_event(child, event):
                    self._add(worker)
                    if self.stopping:  # forked just as the stop began: nothing to serve
                        worker.send(signal.SIGTERM)
                if event.kind == "loaded":
                    self.phases.extend((f"model {name}", seconds) for name, seconds in event.phases)

    def _close_zygote_link(self, child: Child) -> None:
        if child.pipe_fd is not None:
            self.selector.unregister(child.pipe_fd)
            child.pipe_fd = None  # the control socket is the spawner's to close

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
        if processes.forward_output(child, exited):
            self._close_pipe(child)

    def _close_pipe(self, child: Child) -> None:
        if child.pipe_fd is not None:
            self.selector.unregister(child.pipe_fd)
            child.close_pipe()

    def _on_ready(self, child: Child) -> None:
        child.ready = True
        ready = sum(1 for c in self._workers() if c.ready)
        logger.info("worker %d ready (%d/%d)", child.pid, ready, self.plan.workers)
        new_slot = child.slot not in self.listening
        self.listening.add(child.slot)
        if self.stopping:
            return
        if not self.served:
            self.served = True
            if not self._reload_nginx(check=True):
                self._say_ready()
        elif new_slot:
            self._reload_nginx()  # one more socket in the upstream

    def _on_proxied(self, check: ProxyCheck) -> None:
        self.selector.unregister(check)
        check.close()
        if not check.healthy:
            logger.warning("nginx did not answer /ping with 200 within 10 s of its reload")
        if not self.stopping:
            self._say_ready()

    def _say_ready(self) -> None:
        via = "nginx" if self.plan.nginx_binary else "uvicorn"
        settings = self.plan.settings
        where = nginx.listen_address(settings.host, settings.port)
        first = "first worker" if self.spawner.preload else "first worker, model load included"
        taken = startup.describe(time.monotonic() - self.started, self.phases, last=first)
        logger.info("ready: serving model %s on http://%s (%s) in %s", settings.model_dir, where, via, taken)

    def _reload_nginx(self, *, check: bool = False) -> bool:
        """Have nginx proxy to the listening slots (False: no nginx). The reload is asynchronous:
        with ``check`` a ProxyCheck tells when it proxies, and "ready" waits for it."""
        nginx_proc = self._nginx()
        if nginx_proc is None:
            return False
        runtime_layout.replace_file(self.plan.layout.nginx_conf, self.plan.nginx_conf(self.listening))
        nginx_proc.send(signal.SIGHUP, again=True)  # a reload reading the file reads it whole, old or new
        if check:
            settings = self.plan.settings
            proxied = ProxyCheck(settings.port, healthcheck.probe_host({"KILN_HOST": settings.host}))
            self.selector.register(proxied, selectors.EVENT_READ, proxied)
        return True

    def _on_exit(self, pid: int, code: int) -> None:
        child = self.children.pop(pid, None)
        if child is None:
            return  # an orphan re-parented to us (PID 1), or reported twice: nothing else to do
        child.exited(code)
        if child.pipe_fd is not None:
            self._on_pipe(child, exited=True)
        if child.kind == "nginx":
            self._on_nginx_exit(child, code)
        elif child.kind == "zygote":
            self._on_zygote_exit(child, code)
        else:
            self._on_worker_exit(child, code)

    def _on_zygote_exit(self, child: Child, code: int) -> None:
        self._close_zygote_link(child)
        self.spawner.zygote_exited()
        if self.stopping or not self.spawner.preload:
            logger.debug("zygote %d exited (%s)", child.pid, describe_exit(code))
        elif not child.ready:
            logger.error(
                "zygote %d %s before the model was loaded: the model could not be loaded; "
                "its error is above. Stopping.",
                child.pid, self.deaths.out_of_memory(code) or f"exited ({describe_exit(code)})",
            )  # fmt: skip
            self._stop(1, graceful=False)
        elif self.deaths.crash_loop():
            logger.error("zygote %d exited (%s): too many deaths, stopping", child.pid, describe_exit(code))
            self._stop(1, graceful=False)
        else:
            logger.warning(
                "zygote %d %s; the workers keep serving, a new one loads the model for later replacements",
                child.pid, self.deaths.out_of_memory(code) or f"died ({describe_exit(code)})",
            )  # fmt: skip
            self._start_zygote()

    def _on_nginx_exit(self, child: Child, code: int) -> None:
        if self.stopping:
            logger.info("nginx stopped (%s)", describe_exit(code))
            return
        logger.error("nginx exited unexpectedly (%s); see its messages above. Stopping.", describe_exit(code))
        self._stop(1, graceful=False)

    def _on_worker_exit(self, child: Child, code: int) -> None:
        if self.plan.settings.metrics:
            mark_worker_dead(child.pid)
        out_of_memory = self.deaths.out_of_memory(code)
        if self.stopping and not out_of_memory:
            logger.info("worker %d stopped (%s)", child.pid, describe_exit(code))
        elif self.stopping:
            logger.warning("worker %d %s while stopping", child.pid, out_of_memory)
        elif not self.served:
            logger.error(
                "worker %d %s before the model was loaded: the model could not be loaded "
                "or the server could not start; its error is above. Stopping.",
                child.pid, out_of_memory or f"exited ({describe_exit(code)})",
            )  # fmt: skip
            self._stop(1, graceful=False)
        elif child.ready and code == 0:
            # A worker retires itself (e.g. after a request timed out in predict): not a crash.
            logger.info("worker %d stopped on its own after draining; starting a new one", child.pid)
            self._start_worker(child.slot)
        elif self.deaths.crash_loop():
            logger.error(
                "worker %d %s: %d workers died within %g s, stopping instead of restarting",
                child.pid, out_of_memory or f"exited ({describe_exit(code)})",
                self.plan.crash_limit, self.plan.crash_window,
            )  # fmt: skip
            self._stop(1, graceful=False)
        else:
            died = out_of_memory or f"died ({describe_exit(code)})"
            logger.warning("worker %d %s; starting a new one", child.pid, died)
            self._start_worker(child.slot)

    # --- stopping --------------------------------------------------------------------
    def _stop(self, exit_code: int, *, graceful: bool) -> None:
        """Begin stopping: nginx drains first (graceful), or everything is asked to stop at once."""
        if self.stopping:
            return
        self.stopping = True
        self.exit_code = exit_code
        self.deadline = time.monotonic() + self.plan.settings.grace_period
        for child in self.children.values():
            if child.kind != "nginx" and not child.ready:
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
            left = ", ".join(f"{c.kind} {c.pid}" for c in self.children.values())
            logger.warning("grace period of %g s is over: killing %s", self.plan.settings.grace_period, left)
            self._kill_all()

    def _stop_workers(self) -> None:
        for child in (c for c in self.children.values() if c.kind != "nginx"):
            child.send(signal.SIGTERM)

    def _kill_all(self) -> None:
        if self.children:
            self.killed = True
        for child in self.children.values():
            child.send(signal.SIGKILL)

    # --- children --------------------------------------------------------------------
    def _start_worker(self, slot: int) -> None:
        """Start (or have the zygote fork) worker ``slot`` on the slot's socket (``Spawner``)."""
        child = self.spawner.start_worker(slot)
        if child is not None:
            self._add(child)

    def _start_zygote(self) -> None:
        child = self.spawner.start_zygote()
        self.children[child.pid] = child
        assert self.spawner.control is not None
        child.pipe_fd = self.spawner.control.fileno()
        self.selector.register(child.pipe_fd, selectors.EVENT_READ, child)

    def _add(self, child: Child) -> None:
        self.children[child.pid] = child
        assert child.pipe_fd is not None
        self.selector.register(child.pipe_fd, selectors.EVENT_READ, child)

    def _workers(self) -> list[Child]:
        return [c for c in self.children.values() if c.kind == "worker"]

    def _nginx(self) -> Child | None:
        return next((c for c in self.children.values() if c.kind == "nginx"), None)
