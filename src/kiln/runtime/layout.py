"""The runtime directory: every file the runtime writes, and preparing it for a (re)start."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kiln.errors import ServeError

logger = logging.getLogger(__name__)

DIR_MODE = 0o770
"""Owner and group 0 may write: an arbitrary ``--user UID`` with group 0 (OpenShift) still works."""

NGINX_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_MAX_UNIX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL


@dataclass(frozen=True)
class RuntimeLayout:
    """Paths inside ``root`` (``settings.runtime_dir``); nothing is written anywhere else."""

    root: Path

    def worker_socket(self, slot: int) -> Path:
        """The unix socket worker ``slot`` (0..N-1) accepts on; its replacement binds the same path."""
        return self.root / f"uvicorn-{slot}.sock"

    def worker_sockets(self, workers: int) -> list[Path]:
        """Every worker's socket, the ones nginx's upstream lists."""
        return [self.worker_socket(slot) for slot in range(workers)]

    @property
    def nginx_conf(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def nginx_pid(self) -> Path:
        return self.root / "nginx.pid"

    @property
    def log_socket(self) -> Path:
        """The datagram socket nginx logs to; the supervisor reads it."""
        return self.root / "log.sock"

    @property
    def lock(self) -> Path:
        return self.root / "kiln.lock"

    def nginx_temp(self, name: str) -> Path:
        return self.root / "nginx" / name


def prepare(layout: RuntimeLayout, workers: int = 1) -> IO[str]:
    """Create the directory, take its lock, and remove what a previous start left behind.

    Returns the open lock file: keep it open for as long as the runtime runs. A
    second runtime in the same directory fails here instead of stealing the socket.
    Stale sockets and pid files (``docker restart`` keeps /tmp) are removed, so a
    restart in the same directory works.
    """
    longest = layout.worker_socket(max(0, workers - 1))
    if len(os.fsencode(str(longest))) > _MAX_UNIX_SOCKET_PATH:
        raise ServeError(
            f"runtime directory {str(layout.root)!r} is too long for a unix socket path "
            f"({len(str(longest))} characters, at most {_MAX_UNIX_SOCKET_PATH})",
            hint="pass a shorter --runtime-dir / KILN_RUNTIME_DIR, e.g. /tmp/kiln",
        )
    _make_dir(layout.root)
    lock = _take_lock(layout)
    try:
        # uvicorn.sock: the one socket all workers shared before each got its own.
        stale_sockets = [*layout.root.glob("uvicorn-*.sock"), layout.root / "uvicorn.sock"]
        for stale in (*stale_sockets, layout.log_socket, layout.nginx_pid):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                logger.debug("removed %s left by a previous start", stale)
        for name in NGINX_TEMP_DIRS:
            _make_dir(layout.nginx_temp(name))
    except BaseException:
        lock.close()
        raise
    return lock


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise ServeError(
            f"cannot create runtime directory {str(path)!r}: {exc.strerror}",
            hint="set KILN_RUNTIME_DIR (or --runtime-dir) to a writable directory, e.g. on a tmpfs",
        ) from exc
    # mkdir's mode is filtered by the umask; widen it to the group when the directory is ours.
    with contextlib.suppress(OSError):
        if path.stat().st_uid == os.geteuid():
            path.chmod(DIR_MODE)
    if not os.access(path, os.W_OK | os.X_OK):
        raise ServeError(
            f"runtime directory {str(path)!r} is not writable by uid {os.geteuid()} gid {os.getegid()}",
            hint="set KILN_RUNTIME_DIR (or --runtime-dir) to a writable directory, e.g. on a tmpfs",
        )


def _take_lock(layout: RuntimeLayout) -> IO[str]:
    lock = open(layout.lock, "a+", encoding="ascii")  # noqa: SIM115 - held for the runtime's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip() or "unknown"
        lock.close()
        raise ServeError(
            f"runtime directory {str(layout.root)!r} is in use by another kiln runtime (pid {owner})",
            hint="stop that runtime, or give this one its own --runtime-dir / KILN_RUNTIME_DIR",
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def replace_file(path: Path, text: str) -> None:
    """Write ``path`` in one step (a new file renamed over it): readers see the old text or the new."""
    partial = path.with_name(f".{path.name}.new")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
