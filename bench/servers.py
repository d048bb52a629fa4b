"""Start and stop the servers the benchmark compares: ``kiln serve`` (with and without micro-batching),
``mlflow models serve``, MLServer with its MLflow runtime, and BentoML (with and without its adaptive
batching).

Each server runs in its own process group (so its workers and nginx stop with it),
logs to a file (a full pipe would stall it), and is ready when its readiness path says 200.
Every peer runs from its own virtualenv so no two share a package: MLflow's and BentoML's under
``.cache/bench``, MLServer's the one the V2 comparison tests make (``.cache/mlserver/venv``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MLFLOW_VERSION = "3.17.2"
BENTOML_VERSION = "1.4.40"
BENTOML_SERVICE = Path(__file__).resolve().parent / "bentoml_service.py"


@dataclass(frozen=True)
class Server:
    """A running server: what it is, where it answers, and its process and log."""

    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def invocations(self) -> str:
        return f"{self.base_url}/invocations"


def _proc_stats() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, CPU ticks used, start time) for every live process."""
    stats: dict[int, tuple[int, int, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state ppid ...
        except OSError:  # the process ended meanwhile
            continue
        stats[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19]))
    return stats


def _tree(root: int, stats: dict[int, tuple[int, int, int]]) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _ticks, _start) in stats.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(server: Server) -> float:
    """CPU time (user + system) used so far by the server's live process tree.

    The tree (supervisor, nginx, uvicorn workers; kiln gives its children their own
    sessions, so the process group would miss them) is the server's cost, not wrk's.
    """
    stats = _proc_stats()
    ticks = sum(stats[pid][1] for pid in _tree(server.process.pid, stats))
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quiet_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra or {})
    return env


def ensure_mlflow_venv(venv: Path, requirements: Path) -> Path:
    """Make (once) a virtualenv with MLflow and the model's own pinned requirements."""
    return _ensure_venv(venv, requirements, f"mlflow=={MLFLOW_VERSION}")


def ensure_bentoml_venv(venv: Path, requirements: Path) -> Path:
    """Make (once) a virtualenv with BentoML, MLflow (to load the model) and the model's requirements."""
    return _ensure_venv(venv, requirements, f"bentoml=={BENTOML_VERSION}", f"mlflow=={MLFLOW_VERSION}")


def _ensure_venv(venv: Path, requirements: Path, *packages: str) -> Path:
    stamp = venv / ".kiln-bench-stamp"
    want = "\n".join(packages) + f"\n{requirements.read_text()}"
    if stamp.is_file() and stamp.read_text() == want:
        return venv
    uv = Path(sys.executable).parent / "uv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    print(f"bench: making {venv} ({' '.join(packages)} + the model's requirements.txt)", flush=True)
    subprocess.run(
        [str(uv), "venv", "-q", "--allow-existing", "--python", base_python, str(venv)], check=True
    )
    python = str(venv / "bin" / "python")
    install = [str(uv), "pip", "install", "-q", "--python", python, *packages]
    subprocess.run([*install, "-r", str(requirements)], check=True)
    stamp.write_text(want)
    return venv


def start_process(name: str, cmd: Sequence[str], port: int, log: Path, env: dict[str, str]) -> Server:
    """Start ``cmd`` in a new session (its own process group), logging to ``log``."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
    return Server(name=name, base_url=f"http://127.0.0.1:{port}", process=process, log=log)


def stop(server: Server, grace: float = 30.0) -> None:
    """SIGTERM the server, then SIGKILL whatever is left of its process tree after ``grace``."""
    stats = _proc_stats()
    # Taken before the parent goes and its children are reparented; the start time tells a
    # process from a later one that reuses its pid.
    tree = [(pid, stats[pid][2]) for pid in _tree(server.process.pid, stats)]
    with suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)  # start_new_session made it a group leader
    with suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=grace)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid, start) for pid, start in tree):
        time.sleep(0.1)
    for pid, start in tree:
        if _alive(pid, start):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def _alive(pid: int, start: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[19]) == start


def wait_ready(server: Server, timeout: float = 180.0, path: str = "/ping") -> None:
    """Poll ``path`` until 200; fail with the log's tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited {server.process.returncode}:\n{tail(server.log)}")
        try:
            with urllib.request.urlopen(f"{server.base_url}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f}s:\n{tail(server.log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any, str]:
    """POST once: (status, parsed JSON body, the Server header)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers.get("Server", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), exc.headers.get("Server", "")


@contextmanager
def running(server: Server, path: str = "/ping") -> Iterator[Server]:
    """``server`` once ready; stopped (its whole process tree) on the way out."""
    try:
        wait_ready(server, path=path)
        yield server
    finally:
        stop(server)


@contextmanager
def kiln(model: Path, workers: int, log_dir: Path, *, batch: int = 1, name: str = "kiln") -> Iterator[Server]:
    """``kiln serve`` with its defaults (nginx in front of uvicorn workers); ``batch`` > 1: micro-batching."""
    port = free_port()
    cmd = [sys.executable, "-m", "kiln", "serve", "-m", str(model), "--port", str(port)]
    cmd += ["--workers", str(workers), "--max-batch-size", str(batch)]
    with running(start_process(name, cmd, port, log_dir / f"{name}-w{workers}.log", _quiet_env())) as server:
        yield server


@contextmanager
def mlflow(venv: Path, model: Path, workers: int, log_dir: Path) -> Iterator[Server]:
    """``mlflow models serve --env-manager local`` from ``venv`` (its bin first on PATH, as activated)."""
    port = free_port()
    cmd = [str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    env = _quiet_env({"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"})
    with running(start_process("mlflow", cmd, port, log_dir / f"mlflow-w{workers}.log", env)) as server:
        yield server


@contextmanager
def mlserver(venv: Path, model: Path, workers: int, log_dir: Path) -> Iterator[Server]:
    """``mlserver start`` with the ``mlserver_mlflow`` runtime, its MLflow ``/invocations`` on the HTTP port.

    One process does HTTP and inference (``parallel_workers: 0``) when ``workers`` is 1; more
    workers are MLServer's inference pool. Its default pool of one (``parallel_workers: 1``) does
    not start in this venv: MLServer 1.7.1's worker calls ``asyncio.get_event_loop()`` before it has
    one, which uvloop 0.21 refuses ("There is no current event loop").
    """
    port = free_port()
    repository = log_dir / f"mlserver-w{workers}"
    (repository / "model").mkdir(parents=True, exist_ok=True)
    model_settings = {"name": "model", "implementation": "mlserver_mlflow.MLflowRuntime"}
    model_settings["parameters"] = {"uri": str(model)}  # type: ignore[assignment]
    (repository / "model" / "model-settings.json").write_text(json.dumps(model_settings))
    settings = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}
    settings |= {"parallel_workers": 0 if workers == 1 else workers, "debug": False}
    (repository / "settings.json").write_text(json.dumps(settings))
    cmd = [str(venv / "bin" / "mlserver"), "start", str(repository)]
    env = _quiet_env({"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"})
    log = log_dir / f"mlserver-w{workers}.log"
    with running(start_process("mlserver", cmd, port, log, env), "/v2/models/model/ready") as server:
        yield server


@contextmanager
def bentoml(
    venv: Path, model: Path, log_dir: Path, *, batch: int = 1, name: str = "bentoml"
) -> Iterator[Server]:
    """``bentoml serve`` of ``bench/bentoml_service.py`` (one worker); ``batch`` > 1: its adaptive batching
    with at most ``batch`` rows per call."""
    port = free_port()
    service = f"{BENTOML_SERVICE.stem}:{'Batched' if batch > 1 else 'Plain'}"
    cmd = [str(venv / "bin" / "bentoml"), "serve", service, "--host", "127.0.0.1", "--port", str(port)]
    env = _quiet_env(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(BENTOML_SERVICE.parent),
            "BENTOML_DO_NOT_TRACK": "true",
            "KILN_BENCH_MODEL": str(model),
            "KILN_BENCH_MAX_BATCH_SIZE": str(batch),
        }
    )
    with running(start_process(name, cmd, port, log_dir / f"{name}.log", env), "/readyz") as server:
        yield server
