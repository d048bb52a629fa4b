"""How many CPUs this process may use: the cgroup CPU quota and affinity, not the host's core count."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
_V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def available_cpus(
    cgroup_root: Path = CGROUP_ROOT,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
    affinity: int | None = None,
) -> int:
    """CPUs the container may use, rounded up, at least 1.

    The smallest of: the cgroup v2 ``cpu.max`` or cgroup v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` quota of this process's cgroup and its ancestors, and the
    CPUs in its affinity mask (``docker run --cpuset-cpus``). ``affinity`` defaults to
    ``os.sched_getaffinity``; the paths are parameters so tests can point them at files.
    """
    cpus = float(affinity if affinity is not None else _affinity())
    quota = cgroup_cpu_limit(cgroup_root, _read(proc_self_cgroup) or "")
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, math.ceil(cpus))


def cgroup_cpu_limit(cgroup_root: Path, proc_self_cgroup: str) -> float | None:
    """The tightest CPU quota (in CPUs) on this cgroup or its ancestors; None when unlimited."""
    limits: list[float] = []
    for controllers, path in _memberships(proc_self_cgroup):
        if controllers == "":
            limits += _limits_along(cgroup_root, path, _v2_limit)
        elif "cpu" in controllers.split(","):
            for mount in _V1_CPU_MOUNTS:
                if (cgroup_root / mount).is_dir():
                    limits += _limits_along(cgroup_root / mount, path, _v1_limit)
                    break
    return min(limits) if limits else None


def _memberships(proc_self_cgroup: str) -> list[tuple[str, str]]:
    """``(controllers, path)`` per line of /proc/self/cgroup; controllers is "" for cgroup v2."""
    found = []
    for line in proc_self_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) == 3:
            found.append((parts[1], parts[2]))
    return found


def _limits_along(mount: Path, path: str, read_limit: Callable[[Path], float | None]) -> list[float]:
    """Limits on ``mount/path`` and each ancestor up to ``mount``.

    Inside a container the cgroup mount usually *is* the container's cgroup while
    /proc/self/cgroup still names the host-side path; then only ``mount`` is read.
    """
    directory = mount / path.strip("/")
    if not directory.is_dir():
        directory = mount
    limits = []
    while True:
        limit = read_limit(directory)
        if limit is not None:
            limits.append(limit)
        if directory == mount or mount not in directory.parents:
            break
        directory = directory.parent
    return limits


def _v2_limit(directory: Path) -> float | None:
    text = _read(directory / "cpu.max")
    if not text:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _v1_limit(directory: Path) -> float | None:
    quota = _read(directory / "cpu.cfs_quota_us")
    period = _read(directory / "cpu.cfs_period_us")
    if not quota or not period:
        return None
    return _ratio(quota.strip(), period.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # -1: no quota (cgroup v1)
        return None
    return q / p


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
