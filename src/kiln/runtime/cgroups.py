"""Reading this process's cgroups: its memberships, its directory in a mount, and limits up the tree.

Shared by ``cpus`` (the CPU quota) and ``memory`` (the memory limit and OOM-kill count).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

T = TypeVar("T")


def memberships(proc_self_cgroup: str) -> list[tuple[str, str]]:
    """``(controllers, path)`` per line of /proc/self/cgroup; controllers is "" for cgroup v2."""
    found = []
    for line in proc_self_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) == 3:
            found.append((parts[1], parts[2]))
    return found


def cgroup_dir(mount: Path, path: str) -> Path:
    """``mount/path``, or ``mount`` itself when that is missing.

    Inside a container the cgroup mount usually *is* the container's cgroup while
    /proc/self/cgroup still names the host-side path.
    """
    directory = mount / path.strip("/")
    return directory if directory.is_dir() else mount


def limits_along(mount: Path, path: str, read_limit: Callable[[Path], T | None]) -> list[T]:
    """``read_limit`` of the cgroup directory (``cgroup_dir``) and of each ancestor up to ``mount``."""
    directory = cgroup_dir(mount, path)
    limits = []
    while True:
        limit = read_limit(directory)
        if limit is not None:
            limits.append(limit)
        if directory == mount or mount not in directory.parents:
            break
        directory = directory.parent
    return limits


def read_text(path: Path) -> str | None:
    """The file's text, or None when it cannot be read (missing controller, not Linux)."""
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
