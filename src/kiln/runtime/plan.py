"""The plan: what the supervisor runs, decided once at start (workers, nginx); binding their sockets."""

from __future__ import annotations

import os
import resource
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.errors import ServeError
from kiln.runtime import nginx
from kiln.runtime.cpus import available_cpus
from kiln.runtime.layout import RuntimeLayout
from kiln.settings import RuntimeSettings

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
    """Without nginx: the TCP socket on ``host:port`` every worker accepts on, bound but not listening.

    asyncio (and uvloop) call ``listen()`` when a worker starts serving, i.e. after its
    lifespan has loaded the model; until then connections are refused.
    """
    family, address = _tcp_address(plan.settings.host, plan.settings.port)
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (uvicorn #3149).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _bind(sock, address, nginx.listen_address(plan.settings.host, plan.settings.port))
    return sock


def bind_worker_socket(path: Path) -> socket.socket:
    """Behind nginx: one worker's own unix socket at ``path``, bound but not listening.

    A socket file left by an earlier run is removed first. The supervisor binds each
    slot's socket once and keeps it for the slot's later workers. Until the slot's first
    worker has loaded the model and calls ``listen()``, nginx's connections are refused
    and it passes the request to another worker (or answers 503 when none is listening).
    """
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _bind(sock, str(path), str(path))
    os.chmod(path, 0o660)
    return sock


def check_port_free(host: str, port: int) -> None:
    """Fail early, and clearly, when nginx could not bind ``host:port`` (it would retry, then exit)."""
    family, address = _tcp_address(host, port)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _bind(probe, address, nginx.listen_address(host, port))


def _tcp_address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """The socket family and address to bind for ``host`` (an IPv4 or IPv6 address, or a name)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(
            f"cannot listen on {host!r}: {exc.strerror}", hint="pick another --host / KILN_HOST"
        ) from exc
    family, _, _, _, address = found[0]
    return family, address


def _bind(sock: socket.socket, address: str | tuple[str, int], where: str) -> None:
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = (
            "pick another --port / KILN_PORT, or --host / KILN_HOST" if isinstance(address, tuple) else None
        )
        raise ServeError(f"cannot listen on {where}: {exc.strerror}", hint=hint) from exc
