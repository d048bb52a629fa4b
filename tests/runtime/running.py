"""Run the real runtime (``python -m kiln.runtime`` / ``kiln serve``) as a subprocess for tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

READY_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short_tmp_dir(prefix: str) -> Path:
    """A fresh directory with a short path (unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@dataclass
class Running:
    """A runtime process: its port, its combined output, its process tree."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    runtime_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str, timeout: float = 10.0) -> httpx.Response:
        return httpx.get(self.url + path, timeout=timeout)

    def post(
        self, path: str, body: bytes | str, content_type: str = "application/json", timeout: float = 30.0
    ) -> httpx.Response:
        headers = {"Content-Type": content_type}
        return httpx.post(self.url + path, content=body, headers=headers, timeout=timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll /ping until it answers 200 ten times running; fail with the output if the process
        exits or time runs out. nginx's reload to the proxying config is asynchronous: for a moment
        after the first 200 an old nginx worker may still take a connection and answer 503, as
        the supervisor itself allows for before it logs ``ready``."""
        if not wait_for_ping(self.url, self.process, timeout):
            code = self.process.returncode
            if code is not None:
                raise AssertionError(f"runtime exited {code} before ready:\n{self.output()}")
            raise AssertionError(f"runtime not ready after {timeout:.0f} s:\n{self.output()}")

    def wait_exit(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"runtime still running after {timeout:.0f} s:\n{self.output()}") from None

    def children(self) -> list[tuple[int, str]]:
        """``(pid, command line)`` of the supervisor's direct children."""
        return children_of(self.supervisor_pid())

    def supervisor_pid(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        """The worker processes: started by the supervisor, or forked by its zygote (``kiln-worker``)."""
        found = []
        for pid, _ in self.children():
            found += [pid, *(child for child, _ in children_of(pid))]
        return sorted(pid for pid in found if _is_worker(pid))

    def zygote(self) -> int | None:
        """The process that loaded the model and forks the workers (None without preloading)."""
        return next((pid for pid, cmd in self.children() if "kiln.runtime.zygote" in cmd), None)

    def nginx_master(self) -> int | None:
        return next((pid for pid, cmd in self.children() if cmd.startswith("nginx: master")), None)


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, run: Running, poll: float = 0.05
) -> None:
    """Poll ``condition`` until true; fail with the runtime's output after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{run.output()}")


def children_of(parent: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; the fields after its last ')' are fixed.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[1]) == parent:
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace").strip()))
    return found


def _is_worker(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    cmdline = _cmdline(pid) or b""
    return comm == "kiln-worker" or b"-m\0kiln.runtime.worker\0" in cmdline


def runtime_env(
    model: Path, port: int, runtime_dir: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The test process's environment without any kiln/MLflow serving variables, plus these."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KILN_")
        and k not in ("MLFLOW_MODELS_WORKERS", "DISABLE_NGINX", "PORT", "SERVING_MODEL_CONFIG")
    }
    env.update(
        KILN_MODEL_DIR=str(model),
        KILN_PORT=str(port),
        KILN_RUNTIME_DIR=str(runtime_dir),
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    env.update(extra or {})
    return env


@contextmanager
def running(
    command: Sequence[str], env: Mapping[str, str], port: int, runtime_dir: Path, log_dir: Path
) -> Iterator[Running]:
    """Start ``command``; on exit SIGTERM it (SIGKILL after 30 s) and kill any child it left behind."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"runtime-{port}.log"
    # O_APPEND: nginx reopens /dev/stdout itself, and appends must not overwrite each other.
    with open(log, "ab") as out:
        process = subprocess.Popen(list(command), env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    run = Running(process, port, log, runtime_dir)
    try:
        yield run
    finally:
        leftovers = _descendants(process.pid)
        stop(process)
        for pid, cmdline in leftovers:
            # Only a process that is still the one this test started (same pid, same command line).
            if _cmdline(pid) == cmdline:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def wait_for_ping(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once ``url``/ping answered 200 ten times running (see ``Running.wait_ready``); False
    when ``process`` exited or ``timeout`` seconds passed first."""
    deadline = time.monotonic() + timeout
    running = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            running = running + 1 if httpx.get(url + "/ping", timeout=2).status_code == 200 else 0
        except httpx.HTTPError:
            running = 0
        if running >= 10:
            return True
        time.sleep(0.2 if running == 0 else 0.02)
    return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``process`` unless it has exited; SIGKILL it when it is still there after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _descendants(pid: int) -> list[tuple[int, bytes]]:
    found = []
    for child, _ in children_of(pid):
        cmdline = _cmdline(child)
        if cmdline is not None:
            found.append((child, cmdline))
        found.extend(_descendants(child))
    return found


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def runtime_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kiln.runtime", *args]


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
