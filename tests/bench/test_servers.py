"""bench.servers: a server's CPU time covers its whole process tree, and stop() ends the tree."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bench import servers

# A parent and its child each burn about 0.5 s of CPU, then both wait to be stopped. The child
# has its own session, as kiln's supervisor gives nginx and the workers.
_BURN = """
import subprocess, sys
code = "import time\\nend = time.process_time() + 0.5\\nwhile time.process_time() < end: pass\\n"
code += "time.sleep(60)"
child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
print(child.pid, flush=True)
exec(code)
"""


def _start(tmp_path: Path) -> tuple[servers.Server, int]:
    log = tmp_path / "burn.log"
    server = servers.start_process("burn", [sys.executable, "-c", _BURN], 1, log, dict(os.environ))
    deadline = time.monotonic() + 10
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, int(log.read_text().split()[0])


def test_cpu_seconds_counts_the_children_too(tmp_path: Path) -> None:
    server, _child = _start(tmp_path)
    try:
        deadline = time.monotonic() + 30  # a busy machine may take a while to give them 1 s of CPU
        while servers.cpu_seconds(server) < 0.9 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert servers.cpu_seconds(server) >= 0.9  # the parent alone burns only 0.5 s
        time.sleep(0.5)
        assert servers.cpu_seconds(server) < 1.5  # and then both sleep
    finally:
        servers.stop(server, grace=5)


def test_stop_ends_the_whole_process_tree(tmp_path: Path) -> None:
    server, child = _start(tmp_path)
    servers.stop(server, grace=5)
    assert server.process.returncode is not None
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; init reaps it


def test_free_port_is_bindable() -> None:
    import socket

    port = servers.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
    assert 0 < port < 65536
