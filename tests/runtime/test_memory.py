"""find_memory_cgroup on cgroup files written into a temp dir the way the kernel lays them out."""

from __future__ import annotations

from pathlib import Path

from kiln.runtime.memory import find_memory_cgroup
from tests.runtime.cgroup_files import proc_cgroup, write

V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill {}\n"
V2_EVENTS = "low 0\nhigh 0\nmax 12\noom 2\noom_kill {}\noom_group_kill 0\n"


def test_cgroup_v1_container(tmp_path: Path) -> None:
    # Docker 20.10 on a cgroup v1 host (like this one): the mount root is the container's
    # cgroup while /proc/self/cgroup names the host-side path.
    root = tmp_path / "cgroup"
    memory = root / "memory"
    write(memory / "memory.limit_in_bytes", "419430400\n")
    write(memory / "memory.oom_control", V1_OOM_CONTROL.format(0))
    proc = proc_cgroup(tmp_path, "4:memory:/docker/abc\n1:cpu:/docker/abc\n0::/docker/abc\n")
    found = find_memory_cgroup(root, proc)
    assert (found.directory, found.version, found.limit) == (memory, 1, 400 << 20)
    assert found.oom_kills() == 0
    write(memory / "memory.oom_control", V1_OOM_CONTROL.format(3))  # the kernel killed three
    assert found.oom_kills() == 3
    assert found.describe_limit() == "container memory limit 400 MiB"


def test_cgroup_v1_without_a_limit(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    write(root / "memory" / "memory.oom_control", V1_OOM_CONTROL.format(1))
    found = find_memory_cgroup(root, proc_cgroup(tmp_path, "4:memory:/\n"))
    assert found.limit is None and found.oom_kills() == 1
    assert found.describe_limit() == "no container memory limit: the machine itself ran out"


def test_cgroup_v2_tightest_ancestor_wins_and_events_are_read_here(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory pids\n")
    write(root / "kubepods" / "memory.max", str(2 << 30))
    write(root / "kubepods" / "pod1" / "memory.max", "max\n")
    write(root / "kubepods" / "pod1" / "ctr" / "memory.max", "max\n")
    write(root / "kubepods" / "pod1" / "ctr" / "memory.events", V2_EVENTS.format(4))
    found = find_memory_cgroup(root, proc_cgroup(tmp_path, "0::/kubepods/pod1/ctr\n"))
    assert found.version == 2 and found.limit == 2 << 30
    assert found.directory == root / "kubepods" / "pod1" / "ctr"
    assert found.oom_kills() == 4
    assert found.describe_limit() == "container memory limit 2 GiB"


def test_cgroup_v2_namespace_sees_its_own_root(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "memory\n")
    write(root / "memory.max", "536870912\n")
    write(root / "memory.events", V2_EVENTS.format(0))
    found = find_memory_cgroup(root, proc_cgroup(tmp_path, "0::/\n"))
    assert (found.directory, found.limit, found.oom_kills()) == (root, 512 << 20, 0)


def test_no_cgroup_at_all(tmp_path: Path) -> None:
    found = find_memory_cgroup(tmp_path / "missing", tmp_path / "missing-proc")
    assert found.directory is None and found.limit is None and found.oom_kills() is None


def test_this_machine() -> None:
    # Linux with a memory cgroup (v1 or v2), as in every container: a count can be read.
    found = find_memory_cgroup()
    assert found.directory is not None
    kills = found.oom_kills()
    assert kills is not None and kills >= 0
