"""The plan: what the supervisor runs, decided once at start (workers, GPUs, preloading, nginx); sockets."""

from __future__ import annotations

import logging
import os
import resource
import socket
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kiln.errors import ServeError
from kiln.runtime import gpus as gpu_devices
from kiln.runtime import nginx
from kiln.runtime.cpus import available_cpus
from kiln.runtime.layout import RuntimeLayout
from kiln.settings import RuntimeSettings

logger = logging.getLogger(__name__)

DEV_DIR_ENV = "_KILN_DEV_DIR"
"""Internal, for tests: where to look for ``/dev/nvidiaN`` (a directory of fake device files)."""

WORKER_BACKLOG = 2048
"""A worker socket's listen backlog (uvicorn's own default, which its ``listen()`` sets again)."""

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
    nginx_config: nginx.NginxConfig | None = field(default=None, repr=False)
    """What nginx.conf is rendered from (None without nginx)."""
    nginx_loading_conf: str = field(default="", repr=False)
    """nginx.conf until the first worker is ready: every request answered 503 by nginx itself."""
    preload: bool = False
    """Load the model once in the zygote and fork the workers from it (``preload_model``)."""
    gpus: tuple[str, ...] = ()
    """With ``accelerator=cuda``: the GPUs the workers are pinned to, round-robin by slot."""

    def nginx_conf(self, listening: Collection[int]) -> str:
        """The serving nginx.conf, its upstream holding the sockets of the ``listening`` slots only.

        A slot's socket listens from its first worker's start on (the spawner keeps it across
        replacements). Listing a socket before that would have nginx try it, be refused and
        log an ``[error] connect() ... failed (111)`` line for a request another worker serves.
        """
        if self.nginx_config is None:
            return ""
        sockets = tuple(s for slot, s in enumerate(self.nginx_config.sockets) if slot in listening)
        return nginx.render_nginx_conf(replace(self.nginx_config, sockets=sockets))

    def worker_env(self, slot: int) -> dict[str, str]:
        """What worker ``slot``'s environment adds to the supervisor's: its GPU, if any."""
        return gpu_devices.worker_gpu_env(slot, self.gpus)


def make_plan(settings: RuntimeSettings, environ: Mapping[str, str] | None = None) -> Plan:
    """Resolve the worker count (CPU quota, or GPUs with cuda, when unset), preloading and nginx.

    ``environ`` (default ``os.environ``) is where the GPUs are looked up.
    """
    environ = os.environ if environ is None else environ
    layout = RuntimeLayout(Path(os.path.abspath(settings.runtime_dir)))
    cpus = available_cpus()
    gpus = _gpus(settings, environ)
    workers = settings.workers or (max(1, len(gpus)) if settings.accelerator == "cuda" else cpus)
    preload = _preload(settings)
    if settings.disable_nginx:
        return Plan(settings, layout, workers, nginx_binary=None, preload=preload, gpus=gpus)
    binary = nginx.find_nginx(settings.nginx_binary)
    config = nginx.nginx_config(
        settings,
        layout,
        workers=workers,
        cpus=cpus,
        open_files=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        user="root root" if os.geteuid() == 0 else None,
    )
    return Plan(
        settings,
        layout,
        workers,
        nginx_binary=binary,
        nginx_config=config,
        nginx_loading_conf=nginx.render_nginx_conf(config, loading=True),
        preload=preload,
        gpus=gpus,
    )


def _gpus(settings: RuntimeSettings, environ: Mapping[str, str]) -> tuple[str, ...]:
    if settings.accelerator != "cuda":
        return ()
    found = gpu_devices.visible_gpus(environ, Path(environ.get(DEV_DIR_ENV, "/dev")))
    if not found:
        logger.warning(
            "KILN_ACCELERATOR=cuda but this container sees no GPU (no /dev/nvidiaN, no "
            "CUDA_VISIBLE_DEVICES or NVIDIA_VISIBLE_DEVICES): starting %s worker(s) without one; "
            "run it with --gpus all (Docker) or a GPU resource request (Kubernetes)",
            settings.workers or 1,
        )
    return found


def _preload(settings: RuntimeSettings) -> bool:
    """Fork the workers from a process that loaded the model, unless told not to or on CUDA."""
    if settings.preload_model == "off":
        return False
    if settings.accelerator == "cuda":
        if settings.preload_model == "on":
            logger.warning(
                "KILN_PRELOAD_MODEL=on is ignored with KILN_ACCELERATOR=cuda: a CUDA context "
                "does not survive a fork, so each worker loads the model on its own GPU"
            )
        return False
    return True


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
    """Behind nginx: one worker's own unix socket at ``path``, bound and listening.

    A socket file left by an earlier run is removed first. The supervisor binds each
    slot's socket once and keeps it for the slot's later workers. nginx's upstream lists
    a slot's socket only once the slot's first worker is ready (``Plan.nginx_conf``); from
    then on a connection never finds it closed: between the worker's ready signal and its
    own ``listen()``, and while the slot's worker is replaced, it waits in the backlog.
    """
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _bind(sock, str(path), str(path))
    os.chmod(path, 0o660)
    sock.listen(WORKER_BACKLOG)
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
