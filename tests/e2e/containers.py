"""Run containers of built images for end-to-end tests; always removed, logs shown on failure."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from kiln.backends.docker.cli import DockerCli

READY_TIMEOUT = 240.0
"""Model loading is slow when two cores are shared by many test processes."""


@dataclass
class Container:
    cli: DockerCli
    name: str

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.cli.run(list(args), timeout=timeout)

    @property
    def url(self) -> str:
        result = self.docker("port", self.name, "8080/tcp")
        host, _, port = result.stdout.strip().splitlines()[0].rpartition(":")
        return f"http://{host}:{port}"

    def state(self) -> dict[str, Any]:
        data = json.loads(self.docker("inspect", self.name).stdout)
        return dict(data[0]["State"])

    def logs(self) -> str:
        result = self.docker("logs", self.name)
        return result.stdout + result.stderr

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """/ping 200 ten times running (nginx's reload to the proxying config is asynchronous: an
        old nginx worker may answer 503 for a moment after the first 200)."""
        deadline = time.monotonic() + timeout
        running = 0
        while time.monotonic() < deadline:
            state = self.state()
            if not state["Running"] and state["Status"] != "created":
                raise AssertionError(f"container exited {state['ExitCode']} before ready:\n{self.logs()}")
            try:
                running = running + 1 if httpx.get(self.url + "/ping", timeout=3).status_code == 200 else 0
            except (httpx.HTTPError, IndexError):
                running = 0
            if running >= 10:
                return
            time.sleep(0.5 if running == 0 else 0.02)
        raise AssertionError(f"/ping not 200 after {timeout:.0f}s:\n{self.logs()[-4000:]}")

    def wait_exit(self, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if not state["Running"] and state["Status"] != "created":
                return state
            time.sleep(0.5)
        raise AssertionError(f"container still running after {timeout:.0f}s:\n{self.logs()[-4000:]}")

    def post(self, body: str, content_type: str = "application/json") -> httpx.Response:
        return httpx.post(
            self.url + "/invocations", content=body, headers={"Content-Type": content_type}, timeout=60
        )


@contextmanager
def container(
    cli: DockerCli, image: str, *args: str, command: Sequence[str] = (), workers: int | None = 1
) -> Iterator[Container]:
    """``docker run -d -p 127.0.0.1::8080 [args] image [command]``; removed on exit.

    One worker unless ``workers`` says otherwise (None: the image's default): loading the
    model in several workers at once is slow on a shared two-core machine.
    """
    name = f"kiln-e2e-{uuid.uuid4().hex[:12]}"
    env = ("--env", f"KILN_WORKERS={workers}") if workers is not None else ()
    result = cli.run(
        ["run", "--detach", "--name", name, "--publish", "127.0.0.1::8080", *env, *args, image, *command],
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"docker run failed: {result.stderr}")
    try:
        yield Container(cli, name)
    finally:
        cli.run(["rm", "--force", name], timeout=120)
