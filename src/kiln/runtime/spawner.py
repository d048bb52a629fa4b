"""Starting workers: forked by the zygote from a loaded model, or started with exec to load it each.

The supervisor decides *when* a worker slot needs a worker (at start, after a death); the
``Spawner`` decides *how*. With ``plan.preload`` the first worker of every slot waits for
the zygote to report ``loaded``, then each start is a fork request; without it (or after
the zygote found the model unsafe to fork) each start runs ``python -m
kiln.runtime.worker``. Either way the worker listens on its slot's socket, which the
spawner binds once and keeps across replacements (or the one shared TCP socket without nginx).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from kiln.runtime import processes, zygote
from kiln.runtime.logs import LOG_SOCKET_ENV
from kiln.runtime.plan import Plan, bind_worker_socket
from kiln.runtime.processes import Child
from kiln.server.metrics import prepare_metrics_dir

logger = logging.getLogger(__name__)


def worker_env(plan: Plan) -> dict[str, str]:
    """The workers' environment: ours, the settings, the shared metrics directory, the log relay."""
    env = {**os.environ, **plan.settings.to_env()}
    if plan.settings.metrics:
        env.update(prepare_metrics_dir(str(plan.layout.root)))
    if plan.nginx_binary:  # the supervisor relays nginx's logs: the workers' records go there too
        env[LOG_SOCKET_ENV] = str(plan.layout.log_socket)
    return env


class Spawner:
    """Worker starts for the supervisor's loop; owns the slots' sockets and the zygote's control socket."""

    def __init__(self, plan: Plan, worker_env: Mapping[str, str], shared: socket.socket | None) -> None:
        self.plan = plan
        self.worker_env = worker_env
        self.shared = shared
        """Without nginx, the TCP socket all workers accept on; None behind nginx (one socket each)."""
        self.slot_sockets: dict[int, socket.socket] = {}
        """Behind nginx: each worker slot's unix socket, kept open here across worker replacements."""
        self.preload = plan.preload
        self.control: socket.socket | None = None
        """The supervisor's end of the zygote's control socket while a zygote runs."""
        self.loaded = False
        self.waiting: set[int] = set()
        """Slots whose worker waits for a zygote to load the model."""
        self.forking: dict[int, int] = {}
        """Slots asked of the zygote and not yet reported forked: the readiness pipe's read end."""

    # --- the zygote ------------------------------------------------------------------
    def start_zygote(self) -> Child:
        ours, theirs = zygote.control_pair()
        try:
            child = processes.start_zygote(self.plan.python, theirs, self.worker_env)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.control = ours
        self.loaded = False
        return child

    def on_event(self, child: Child, event: zygote.Event) -> list[Child]:
        """Act on the zygote's ``loaded``, ``forked`` or ``unsafe``; the workers to watch from now on."""
        if event.kind == "loaded":
            child.ready = True
            self.loaded = True
            for slot in sorted(self.waiting):
                self._request_fork(slot)
            self.waiting.clear()
        elif event.kind == "forked":
            read_fd = self.forking.pop(event.slot, None)
            if read_fd is not None:
                logger.debug("forked worker %d (slot %d)", event.pid, event.slot)
                return [Child("worker", event.pid, pipe_fd=read_fd, slot=event.slot)]
        elif event.kind == "unsafe":
            child.ready = True  # it exits on its own next; not a failure
            logger.warning(
                "not forking the workers from the loaded model: %s; each worker loads the model "
                "itself instead (set KILN_PRELOAD_MODEL=off to skip this check, or =on to fork anyway)",
                event.reason,
            )
            return self._fall_back()
        return []

    def _fall_back(self) -> list[Child]:
        """The model is not safe to fork: from now on every worker loads it itself."""
        self.preload = False
        self._zygote_gone()
        slots, self.waiting = sorted(self.waiting), set()
        return [self._exec(slot) for slot in slots]

    def zygote_exited(self) -> None:
        """The zygote is gone: slots it had not forked yet wait for the next one."""
        self._zygote_gone()

    def _zygote_gone(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        self.loaded = False
        for slot, read_fd in self.forking.items():
            os.close(read_fd)
            self.waiting.add(slot)
        self.forking.clear()

    # --- workers ---------------------------------------------------------------------
    def start_worker(self, slot: int) -> Child | None:
        """A worker for ``slot``: the started Child, or None when the zygote will fork it (later)."""
        if not self.preload:
            return self._exec(slot)
        if self.loaded and self.control is not None:
            self._request_fork(slot)
        else:
            self.waiting.add(slot)
        return None

    def _exec(self, slot: int) -> Child:
        env = {**self.worker_env, **self.plan.worker_env(slot)}
        child = processes.start_worker(self.plan.python, self._listener(slot), env, slot)
        logger.debug("started worker %d (slot %d)", child.pid, slot)
        return child

    def _request_fork(self, slot: int) -> None:
        assert self.control is not None
        read_fd, write_fd = os.pipe()
        try:
            zygote.request_fork(self.control, slot, self._listener(slot), write_fd)
        except OSError:
            os.close(read_fd)
            self.waiting.add(slot)  # the zygote is going away; its successor forks this slot
            return
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.forking[slot] = read_fd

    def _listener(self, slot: int) -> socket.socket:
        """The socket worker ``slot`` accepts on, behind nginx bound at the slot's first start.

        The spawner keeps each slot's socket open (and listening) across replacements: once
        the slot's first worker is ready and nginx lists the socket, connections nginx
        opens while that worker is being replaced wait in the socket's backlog and are
        served by its successor instead of being refused (with one worker there is no
        other worker to pass them to). ``least_conn`` steers new requests to the other
        workers meanwhile, since the waiting connections count against the restarting slot.
        """
        if self.shared is not None:
            return self.shared
        sock = self.slot_sockets.get(slot) or bind_worker_socket(self.plan.layout.worker_socket(slot))
        self.slot_sockets[slot] = sock
        return sock

    def close(self) -> None:
        self._zygote_gone()
        for sock in self.slot_sockets.values():
            sock.close()
