"""nginx in front of the workers: its config (rendered from a template), its binary, its command line."""

from __future__ import annotations

import functools
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import TYPE_CHECKING

from kiln.errors import ServeError
from kiln.runtime.layout import RuntimeLayout
from kiln.runtime.nginx_errors import error_pages
from kiln.settings import RuntimeSettings

if TYPE_CHECKING:
    import jinja2

FALLBACK_PATHS = ("/usr/sbin/nginx",)
"""Where Debian puts nginx; /usr/sbin is often missing from a non-root user's PATH."""

PROXY_TIMEOUT_MARGIN = 10
"""Seconds nginx waits beyond ``request_timeout``: the app answers 504 itself, nginx never cuts first."""

MEMORY_BODY_BUFFER = 1024 * 1024
"""Request bodies up to this size stay in memory (larger ones go to a temp file in the runtime dir)."""

UPSTREAM_KEEPALIVE_TIMEOUT = 60
WORKER_KEEPALIVE_TIMEOUT = 65
"""uvicorn's ``timeout_keep_alive``: longer than nginx's, so nginx never reuses a closing connection."""

HEADER_LINE_LIMIT = 8 * 1024
"""nginx's default buffer for one request line or header (``large_client_header_buffers 4 8k``)."""

_MAX_WORKER_CONNECTIONS = 4096


@dataclass(frozen=True)
class NginxConfig:
    """Everything nginx.conf depends on; ``render_nginx_conf`` turns it into the file's text."""

    listen: str
    """``host:port`` (``[v6]:port``) of the server block."""
    runtime_dir: str
    sockets: tuple[str, ...]
    """One unix socket per worker; nginx sends each request to the one with the fewest active."""
    worker_processes: int
    worker_connections: int
    upstream_keepalive: int
    upstream_keepalive_timeout: int
    request_timeout: float
    proxy_timeout: int
    client_max_body_size: int
    client_body_buffer_size: int
    shutdown_timeout: int
    client_timeout: float
    """nginx's ``client_header_timeout`` and ``client_body_timeout``."""
    header_buffers: int
    header_buffer_size: int
    """``large_client_header_buffers``: each line fits in one buffer, all of them in ``max_header_size``."""
    max_header_size: int
    log_socket: str = ""
    """The unix datagram socket nginx sends its log lines to (``kiln.runtime.logrelay``)."""
    user: str | None = None
    """``user root root`` when the master runs as root; None otherwise (nginx ignores it then)."""


def nginx_config(
    settings: RuntimeSettings,
    layout: RuntimeLayout,
    *,
    workers: int,
    cpus: int,
    open_files: int,
    user: str | None = None,
) -> NginxConfig:
    """The nginx settings for ``settings``; ``open_files`` is the soft RLIMIT_NOFILE."""
    header_buffer = min(HEADER_LINE_LIMIT, settings.max_header_size)
    return NginxConfig(
        listen=listen_address(settings.host, settings.port),
        runtime_dir=str(layout.root),
        sockets=tuple(str(path) for path in layout.worker_sockets(workers)),
        worker_processes=max(1, min(cpus, workers)),
        # Each proxied request holds two connections; stay under the open-file limit.
        worker_connections=max(64, min(_MAX_WORKER_CONNECTIONS, open_files - 32)),
        upstream_keepalive=max(8, 4 * workers),
        upstream_keepalive_timeout=UPSTREAM_KEEPALIVE_TIMEOUT,
        request_timeout=settings.request_timeout,
        proxy_timeout=math.ceil(settings.request_timeout) + PROXY_TIMEOUT_MARGIN,
        client_max_body_size=settings.max_body_size,
        client_body_buffer_size=min(settings.max_body_size, MEMORY_BODY_BUFFER),
        shutdown_timeout=max(1, math.ceil(settings.grace_period)),
        client_timeout=settings.client_timeout,
        header_buffers=math.ceil(settings.max_header_size / header_buffer),
        header_buffer_size=header_buffer,
        max_header_size=settings.max_header_size,
        log_socket=str(layout.log_socket),
        user=user,
    )


def render_nginx_conf(config: NginxConfig, *, loading: bool = False) -> str:
    """The text of nginx.conf for ``config`` (pure: same config, same text).

    ``loading``: the config nginx runs with until the first worker is ready, answering 503 itself.
    """
    template = _environment().get_template("nginx.conf.j2")
    values = asdict(config)
    values["loading"] = loading
    values["request_timeout"] = _seconds(config.request_timeout)
    values["client_timeout_text"] = _seconds(config.client_timeout)
    values["client_timeout"] = _duration(config.client_timeout)
    values["header_buffer_size"] = _size(config.header_buffer_size)
    values["error_pages"] = error_pages(
        max_body_size=config.client_max_body_size, proxy_timeout=config.proxy_timeout
    )
    return template.render(**values)


def find_nginx(
    configured: str | None = None,
    *,
    search_path: str | None = None,
    fallbacks: Sequence[str] = FALLBACK_PATHS,
) -> str:
    """The nginx binary: ``configured`` if set, else ``nginx`` on ``search_path`` ($PATH), else a fallback."""
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise ServeError(
            f"nginx binary {configured!r} (KILN_NGINX_BINARY) does not exist or is not executable",
            hint=_INSTALL_HINT,
        )
    found = shutil.which("nginx", path=search_path if search_path is not None else os.environ.get("PATH"))
    if found:
        return found
    for candidate in fallbacks:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    looked = ", ".join(["$PATH", *fallbacks])
    raise ServeError(f"nginx is not installed (looked for 'nginx' in {looked})", hint=_INSTALL_HINT)


_INSTALL_HINT = (
    "install it (Debian/Ubuntu: apt-get install nginx), or serve without it with "
    "--no-nginx / DISABLE_NGINX=true (uvicorn then listens on the port itself)"
)


def nginx_command(binary: str, layout: RuntimeLayout) -> list[str]:
    """nginx in the foreground with its prefix in the runtime dir and errors on stderr from the start.

    ``-e stderr`` keeps nginx from opening /var/log/nginx/error.log before it has read
    the config, and ``-p`` keeps every relative path inside the runtime dir, so nginx
    works as a non-root user on a read-only root filesystem.
    """
    return [binary, "-e", "stderr", "-p", str(layout.root), "-c", str(layout.nginx_conf)]


def listen_address(host: str, port: int) -> str:
    """``host:port`` as nginx's ``listen`` and log lines write it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _duration(seconds: float) -> str:
    """An nginx time: whole seconds as ``10s``, anything finer in milliseconds (nginx has no fractions)."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def _size(size: int) -> str:
    return f"{size // 1024}k" if size % 1024 == 0 else str(size)


@functools.cache  # one compile of the template: the supervisor renders again as each worker comes up
def _environment() -> jinja2.Environment:
    import jinja2  # here: workers import this module for its constants and never render

    source = resources.files("kiln.runtime") / "templates" / "nginx.conf.j2"
    loader = jinja2.DictLoader({"nginx.conf.j2": source.read_text(encoding="utf-8")})
    return jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
