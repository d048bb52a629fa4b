"""available_cpus on cgroup files written into a temp dir the way the kernel lays them out."""

from __future__ import annotations

from pathlib import Path

from kiln.runtime.cpus import available_cpus, cgroup_cpu_limit
from tests.runtime.cgroup_files import proc_cgroup, write


def test_cgroup_v2_quota_rounds_up(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "150000 100000\n")  # docker run --cpus 1.5, with a cgroup namespace
    proc = proc_cgroup(tmp_path, "0::/\n")
    assert available_cpus(root, proc, affinity=8) == 2


def test_cgroup_v2_unlimited_uses_affinity(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "max 100000\n")
    proc = proc_cgroup(tmp_path, "0::/\n")
    assert available_cpus(root, proc, affinity=6) == 6


def test_cgroup_v2_tightest_ancestor_wins(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "kubepods" / "cpu.max", "300000 100000\n")
    write(root / "kubepods" / "pod1" / "cpu.max", "max 100000\n")
    write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", "50000 100000\n")
    proc = proc_cgroup(tmp_path, "0::/kubepods/pod1/ctr\n")
    assert cgroup_cpu_limit(root, proc.read_text()) == 0.5
    assert available_cpus(root, proc, affinity=16) == 1


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    # Docker 20.10 on a cgroup v1 host (like this one): the container sees its own cgroup
    # at the mount root while /proc/self/cgroup names the host-side path.
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "250000\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    proc = proc_cgroup(
        tmp_path, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n"
    )
    assert available_cpus(root, proc, affinity=32) == 3


def test_cgroup_v1_no_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    proc = proc_cgroup(tmp_path, "3:cpu:/\n")
    assert cgroup_cpu_limit(root, proc.read_text()) is None
    assert available_cpus(root, proc, affinity=4) == 4


def test_affinity_smaller_than_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "800000 100000\n")
    proc = proc_cgroup(tmp_path, "0::/\n")
    assert available_cpus(root, proc, affinity=2) == 2


def test_at_least_one_cpu(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "1000 100000\n")  # 0.01 CPU
    proc = proc_cgroup(tmp_path, "0::/\n")
    assert available_cpus(root, proc, affinity=4) == 1


def test_no_cgroup_files(tmp_path: Path) -> None:
    assert available_cpus(tmp_path / "missing", tmp_path / "missing-proc", affinity=3) == 3


def test_this_machine() -> None:
    # Whatever the host, the answer is a positive count no larger than the affinity mask.
    import os

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
