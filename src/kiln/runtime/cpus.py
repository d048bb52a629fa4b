"""How many CPUs this process may use: the cgroup CPU quota and affinity, not the host's core count."""

from __future__ import annotations

import math
import os
from pathlib import Path

from kiln.runtime.cgroups import CGROUP_ROOT, PROC_SELF_CGROUP, limits_along, memberships, read_text

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
    quota = cgroup_cpu_limit(cgroup_root, read_text(proc_self_cgroup) or "")
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, math.ceil(cpus))


def cgroup_cpu_limit(cgroup_root: Path, proc_self_cgroup: str) -> float | None:
    """The tightest CPU quota (in CPUs) on this cgroup or its ancestors; None when unlimited."""
    limits: list[float] = []
    for controllers, path in memberships(proc_self_cgroup):
        if controllers == "":
            limits += limits_along(cgroup_root, path, _v2_limit)
        elif "cpu" in controllers.split(","):
            for mount in _V1_CPU_MOUNTS:
                if (cgroup_root / mount).is_dir():
                    limits += limits_along(cgroup_root / mount, path, _v1_limit)
                    break
    return min(limits) if limits else None


def _v2_limit(directory: Path) -> float | None:
    text = read_text(directory / "cpu.max")
    if not text:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _v1_limit(directory: Path) -> float | None:
    quota = read_text(directory / "cpu.cfs_quota_us")
    period = read_text(directory / "cpu.cfs_period_us")
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
