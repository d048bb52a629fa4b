"""``kiln serve``: the runtime on this machine, with flags mapped onto RuntimeSettings."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from kiln import contract
from tests.runtime.raw_clients import connect, head_with_header, read_answer, send_head
from tests.runtime.running import (
    Running,
    free_port,
    remove_dir,
    running,
    runtime_command,
    runtime_env,
    short_tmp_dir,
)
from tests.runtime.scoring import iris_expected, iris_request

StartServe = Callable[..., Running]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_") and k != "DISABLE_NGINX"}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", **extra)
    return env


def _kiln(*args: str) -> list[str]:
    return [sys.executable, "-m", "kiln", *args]


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[StartServe]:
    """``start_serve(model, "--workers", "1")``: ``kiln serve -m model --port <free>`` running."""
    with ExitStack() as stack:

        def start(model: Path, *args: str) -> Running:
            port = free_port()
            command = _kiln("serve", "-m", str(model), "--port", str(port), *args)
            return stack.enter_context(running(command, _env(), port, tmp_path, tmp_path / "logs"))

        yield start


def test_kiln_serve_serves_with_flags(start_serve: StartServe, model_dir: Callable[[str], Path]) -> None:
    model = model_dir("sklearn_iris")
    run = start_serve(model, "--workers", "1", "--request-timeout", "7", "--max-body-size", "1m")
    run.wait_ready()
    response = run.post("/invocations", iris_request(model))
    assert response.status_code == 200
    assert response.json() == {"predictions": iris_expected(model)}
    assert response.headers["server"] == "nginx"
    assert len(run.workers()) == 1
    # The flags reached nginx.conf in the fresh runtime dir, which is removed at exit.
    runtime_dir = Path(re.search(r"\(runtime dir (\S+)\)", run.output()).group(1))  # type: ignore[union-attr]
    conf = (runtime_dir / "nginx.conf").read_text()
    assert "proxy_read_timeout 17s;" in conf
    assert "client_max_body_size 1048576;" in conf
    run.process.send_signal(signal.SIGINT)  # Ctrl+C
    assert run.wait_exit(30) == 0
    assert not runtime_dir.exists()


def test_kiln_serve_no_nginx(start_serve: StartServe, model_dir: Callable[[str], Path]) -> None:
    run = start_serve(model_dir("sklearn_iris"), "--no-nginx", "--workers", "1")
    run.wait_ready()
    assert run.nginx_master() is None
    assert "server" not in run.get("/ping").headers


def test_kiln_serve_without_nginx_installed_says_what_to_do(model_dir: Callable[[str], Path]) -> None:
    # KILN_NGINX_BINARY stands in for "not on PATH" without hiding the real nginx from other tests.
    command = _kiln("serve", "-m", str(model_dir("sklearn_iris")), "--port", str(free_port()))
    env = _env(KILN_NGINX_BINARY="/nonexistent/sbin/nginx")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Error: nginx binary '/nonexistent/sbin/nginx'" in result.stderr
    assert "apt-get install nginx" in result.stderr
    assert "--no-nginx" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--max-body-size", "lots"], 2, "--max-body-size='lots' is not a size"),
        (["--workers", "0"], 2, "Invalid value for '--workers'"),
        (["--model-config", "[1]"], 2, "--model-config must be a JSON object"),
        (["--disable-nginx", "--log-level", "loud"], 2, "Invalid value for '--log-level'"),
    ],
)
def test_kiln_serve_bad_flags(
    model_dir: Callable[[str], Path], args: list[str], code: int, message: str
) -> None:
    command = _kiln("serve", "-m", str(model_dir("sklearn_iris")), *args)
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_kiln_serve_remote_uri_without_a_tracking_server(tmp_path: Path) -> None:
    env = {k: v for k, v in _env().items() if not k.startswith("MLFLOW_TRACKING")}
    result = subprocess.run(
        _kiln("serve", "-m", "runs:/0123abcd/model"), env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "model URI 'runs:/0123abcd/model' needs an MLflow tracking server" in result.stderr
    assert "--tracking-uri" in result.stderr
    assert "Traceback" not in result.stderr


def test_kiln_serve_missing_model_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = subprocess.run(
        _kiln("serve", "-m", str(missing), "--disable-nginx"), env=_env(), capture_output=True, text=True
    )
    assert result.returncode == 1
    assert f"Error: model path '{missing}' does not exist" in result.stderr


# --- where it listens: loopback on a host, every interface in the image ------------------------


def _listeners(port: int) -> set[str]:
    """The addresses in LISTEN state on ``port``, from /proc/net/tcp and tcp6."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            local, state = line.split()[1], line.split()[3]
            host_hex, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # TCP_LISTEN
                raw = b"".join(bytes.fromhex(host_hex[i : i + 8])[::-1] for i in range(0, len(host_hex), 8))
                found.add(socket.inet_ntop(family, raw))
    return found


def _outside_address() -> str | None:
    """A non-loopback IPv4 address of this machine, or None when it has none."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return None
    return next((a for a in out.split() if "." in a and not a.startswith("127.")), None)


def _reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("nginx", [True, False], ids=["nginx", "no-nginx"])
def test_kiln_serve_listens_on_loopback_only_by_default(
    start_serve: StartServe, model_dir: Callable[[str], Path], nginx: bool
) -> None:
    run = start_serve(model_dir("sklearn_iris"), "--workers", "1", *([] if nginx else ["--no-nginx"]))
    run.wait_ready()
    assert _listeners(run.port) == {"127.0.0.1"}
    # "ready" is logged once the reloaded nginx answers steadily, a moment after the first 200.
    deadline = time.monotonic() + 15
    while f"on http://127.0.0.1:{run.port} (" not in run.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"on http://127.0.0.1:{run.port} (" in run.output()
    outside = _outside_address()
    if outside is not None:  # the machine's own network address is refused, loopback answers
        assert not _reachable(outside, run.port)
    assert run.get("/ping").status_code == 200


def test_kiln_serve_host_widens_it(start_serve: StartServe, model_dir: Callable[[str], Path]) -> None:
    run = start_serve(model_dir("sklearn_iris"), "--workers", "1", "--host", "0.0.0.0")
    run.wait_ready()
    assert _listeners(run.port) == {"0.0.0.0"}
    outside = _outside_address()
    if outside is not None:
        assert httpx.get(f"http://{outside}:{run.port}/ping", timeout=10).status_code == 200


def test_kiln_host_env_widens_it_and_the_option_wins(
    start_serve: StartServe, model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """KILN_HOST sets it for `kiln serve`; --host wins over it (the image's default is contract.HOST)."""
    port = free_port()
    command = _kiln("serve", "-m", str(model_dir("sklearn_iris")), "--port", str(port), "--no-nginx")
    env = _env(KILN_HOST="0.0.0.0", KILN_WORKERS="1")
    with running([*command, "--host", "127.0.0.1"], env, port, tmp_path, tmp_path / "logs") as run:
        run.wait_ready()
        assert _listeners(port) == {"127.0.0.1"}
    port = free_port()
    command = _kiln("serve", "-m", str(model_dir("sklearn_iris")), "--port", str(port), "--no-nginx")
    with running(command, env, port, tmp_path, tmp_path / "logs") as run:
        run.wait_ready()
        assert _listeners(port) == {"0.0.0.0"}


def test_the_image_entrypoint_still_listens_on_every_interface(
    model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """``python -m kiln.runtime`` (the image's entrypoint) keeps contract.HOST, nginx included."""
    port, runtime_dir = free_port(), short_tmp_dir("kiln-rt-")
    env = runtime_env(model_dir("sklearn_iris"), port, runtime_dir, {"KILN_WORKERS": "1"})
    try:
        with running(runtime_command(), env, port, runtime_dir, tmp_path / "logs") as run:
            run.wait_ready()
            assert run.nginx_master() is not None
            assert _listeners(port) == {contract.HOST}
    finally:
        remove_dir(runtime_dir)


# --- client limits from the command line -------------------------------------------------------


@pytest.mark.parametrize("nginx", [True, False], ids=["nginx", "no-nginx"])
def test_kiln_serve_client_limits(
    start_serve: StartServe, model_dir: Callable[[str], Path], nginx: bool
) -> None:
    """--max-header-size and --client-timeout reach nginx, and the workers when they face clients."""
    limits = ["--max-header-size", "12k", "--client-timeout", "1.5"]
    run = start_serve(
        model_dir("sklearn_iris"), "--workers", "1", *limits, *([] if nginx else ["--no-nginx"])
    )
    run.wait_ready()
    answer = send_head(run.port, head_with_header(14 * 1024))
    assert answer.status == 431, answer
    assert b'"error_code":"REQUEST_LIMIT_EXCEEDED"' in answer.body
    assert send_head(run.port, head_with_header(6 * 1024)).status == 200  # under 8k a line, 12k in all
    # A head that never ends is cut after 1.5 s (not the default 10 s).
    with connect(run.port) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: kiln\r\n")
        started = time.monotonic()
        answer = read_answer(sock, timeout=8)
        waited = time.monotonic() - started
    assert answer.status in (0, 408), answer  # nginx closes silently, the workers answer 408 JSON
    assert 1.0 <= waited < 5, waited
