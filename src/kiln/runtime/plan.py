"""The plan: what the supervisor will run, decided once at start (workers, nginx, the listening socket)."""

from __future__ import annotations

import os
import resource
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import ServeError
from kiln.runtime import nginx
from kiln.runtime.cpus import available_cpus
from kiln.runtime.layout import RuntimeLayout
from kiln.runtime.settings import RuntimeSettings

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
