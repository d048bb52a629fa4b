"""The container's memory limit and the kernel's OOM-kill count, read from the cgroup (v1 or v2).

The supervisor reads the count when a worker dies by SIGKILL: if it went up, the
kernel's OOM killer chose that worker, and the log says so instead of a bare signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kiln.runtime.cgroups import (
    CGROUP_ROOT,
    PROC_SELF_CGROUP,
    cgroup_dir,
    limits_along,
    memberships,
    read_text,
)

_UNLIMITED = 1 << 62
"""cgroup v1 writes "no limit" as a huge number (9223372036854771712 on 4 KiB pages)."""


@dataclass(frozen=True)
class MemoryCgroup:
    """This process's memory cgroup: the directory with its counters, and the tightest limit above it."""

    directory: Path | None
    """Where ``memory.events`` (v2) or ``memory.oom_control`` (v1) is; None without a memory cgroup."""
    version: int
    limit: int | None
    """Bytes; None when neither this cgroup nor an ancestor has a limit."""

    def oom_kills(self) -> int | None:
        """How many processes the OOM killer has killed in this cgroup so far; None if unknown."""
        if self.directory is None:
            return None
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        text = read_text(self.directory / name) or ""
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return None

    def describe_limit(self) -> str:
        """``container memory limit 512 MiB`` or ``no container memory limit``."""
        if self.limit is None:
            return "no container memory limit: the machine itself ran out"
        return f"container memory limit {_mebibytes(self.limit)}"


def find_memory_cgroup(
    cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> MemoryCgroup:
    """The memory cgroup of this process, from ``/proc/self/cgroup`` and the cgroup mount.

    Inside a container the mount usually *is* the container's cgroup while
    ``/proc/self/cgroup`` may still name the host-side path; then the mount itself is used.
    """
    found = memberships(read_text(proc_self_cgroup) or "")
    for controllers, path in found:
        if "memory" in controllers.split(","):
            return _find(cgroup_root / "memory", path, version=1)
    for controllers, path in found:
        if controllers == "" and (cgroup_root / "cgroup.controllers").is_file():
            return _find(cgroup_root, path, version=2)
    return MemoryCgroup(directory=None, version=0, limit=None)


def _find(mount: Path, path: str, *, version: int) -> MemoryCgroup:
    if not mount.is_dir():
        return MemoryCgroup(directory=None, version=0, limit=None)
    limits = limits_along(mount, path, lambda directory: _limit(directory, version))
    return MemoryCgroup(
        directory=cgroup_dir(mount, path), version=version, limit=min(limits) if limits else None
    )


def _limit(directory: Path, version: int) -> int | None:
    text = (read_text(directory / ("memory.max" if version == 2 else "memory.limit_in_bytes")) or "").strip()
    if not text.isdigit():
        return None  # "max" (v2), or no such file
    value = int(text)
    return value if value < _UNLIMITED else None


def _mebibytes(size: int) -> str:
    if size >= 1 << 30 and size % (1 << 30) == 0:
        return f"{size >> 30} GiB"
    return f"{size / (1 << 20):.0f} MiB"
