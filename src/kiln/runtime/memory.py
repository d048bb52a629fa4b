"""The container's memory limit and the kernel's OOM-kill count, read from the cgroup (v1 or v2).

The supervisor reads the count when a worker dies by SIGKILL: if it went up, the
kernel's OOM killer chose that worker, and the log says so instead of a bare signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
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
        text = _read(self.directory / name) or ""
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
    for line in (_read(proc_self_cgroup) or "").splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2]
        if "memory" in controllers.split(","):
            return _find(cgroup_root / "memory", path, version=1)
    for line in (_read(proc_self_cgroup) or "").splitlines():
        if line.startswith("0::") and (cgroup_root / "cgroup.controllers").is_file():
            return _find(cgroup_root, line[3:].strip(), version=2)
    return MemoryCgroup(directory=None, version=0, limit=None)


def _find(mount: Path, path: str, *, version: int) -> MemoryCgroup:
    if not mount.is_dir():
        return MemoryCgroup(directory=None, version=0, limit=None)
    directory = mount / path.strip("/")
    if not directory.is_dir():
        directory = mount
    limits = []
    current = directory
    while True:
        limit = _limit(current, version)
        if limit is not None:
            limits.append(limit)
        if current == mount or mount not in current.parents:
            break
        current = current.parent
    return MemoryCgroup(directory=directory, version=version, limit=min(limits) if limits else None)


def _limit(directory: Path, version: int) -> int | None:
    text = (_read(directory / ("memory.max" if version == 2 else "memory.limit_in_bytes")) or "").strip()
    if not text.isdigit():
        return None  # "max" (v2), or no such file
    value = int(text)
    return value if value < _UNLIMITED else None


def _mebibytes(size: int) -> str:
    if size >= 1 << 30 and size % (1 << 30) == 0:
        return f"{size >> 30} GiB"
    return f"{size / (1 << 20):.0f} MiB"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
