"""``kiln build --smoke-test``: start the image, wait for /ping, score the saved input example."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from kiln import contract
from kiln.backends.docker.cli import DockerCli
from kiln.errors import BuildError

log = logging.getLogger(__name__)

EXAMPLE_FILE = "serving_input_example.json"


@dataclass(frozen=True)
class SmokeResult:
    ready_seconds: float
    status: int | None
    """Of the POST of the input example; None when the model saved no example."""
    body: str | None


def smoke_test(
    cli: DockerCli,
    image: str,
    model_dir: Path,
    *,
    mount: bool = False,
    timeout: float = 300.0,
    on_output: Callable[[str], None] | None = None,
) -> SmokeResult:
    """Run ``image``, wait until /ping is 200, POST ``model_dir``'s serving input example.

    ``mount`` mounts ``model_dir`` read-only at the model path (model-agnostic images).
    Any failure raises BuildError with the end of the container's log; the container
    is removed in every case.
    """
    name = f"kiln-smoke-{uuid.uuid4().hex[:12]}"
    args = ["run", "--detach", "--name", name, "--publish", f"127.0.0.1::{contract.PORT}"]
    if mount:
        args += ["--volume", f"{model_dir.resolve()}:{contract.MODEL_DIR}:ro"]
    started = time.monotonic()
    result = cli.run([*args, image], timeout=120)
    if result.returncode != 0:
        raise BuildError(
            f"smoke test: could not start a container of {image!r}", log_tail=result.stderr[-2000:]
        )
    try:
        base_url = _address(cli, name)
        _wait_ready(cli, name, base_url, timeout, on_output)
        ready = time.monotonic() - started
        example = model_dir / EXAMPLE_FILE
        if not example.is_file():
            log.info("smoke test: the model saved no %s; checked /ping only", EXAMPLE_FILE)
            return SmokeResult(ready, None, None)
        response = httpx.post(
            f"{base_url}/invocations",
            content=example.read_bytes(),
            headers={"Content-Type": "application/json"},
            timeout=120,
        )
        if response.status_code != 200:
            raise BuildError(
                f"smoke test: POST /invocations with {EXAMPLE_FILE} answered {response.status_code}: "
                f"{response.text[:500]}",
                log_tail=_logs(cli, name),
            )
        return SmokeResult(ready, response.status_code, _compact(response.text))
    finally:
        cli.run(["rm", "--force", name], timeout=60)


def _address(cli: DockerCli, name: str) -> str:
    result = cli.run(["port", name, f"{contract.PORT}/tcp"], timeout=30)
    mapping = result.stdout.strip().splitlines()
    if result.returncode != 0 or not mapping:
        raise BuildError(f"smoke test: container {name} has no published port {contract.PORT}")
    host, _, port = mapping[0].rpartition(":")
    return f"http://{host or '127.0.0.1'}:{port}"


def _wait_ready(
    cli: DockerCli, name: str, base_url: str, timeout: float, on_output: Callable[[str], None] | None
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{base_url}/ping", timeout=5)
            if response.status_code == 200:
                return
            last = f"/ping answered {response.status_code}"
        except httpx.HTTPError as exc:
            last = f"/ping: {type(exc).__name__}"
        state = cli.run(["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name], timeout=30)
        status, _, code = state.stdout.strip().partition(" ")
        if status not in ("running", "created"):
            raise BuildError(
                f"smoke test: the container stopped before it was ready ({status}, exit code {code})",
                log_tail=_logs(cli, name),
            )
        if on_output is not None:
            on_output(f"waiting for /ping ({last})")
        time.sleep(0.5)
    raise BuildError(
        f"smoke test: /ping was not 200 within {timeout:.0f}s ({last})", log_tail=_logs(cli, name)
    )


def _logs(cli: DockerCli, name: str) -> str:
    result = cli.run(["logs", "--tail", "40", name], timeout=30)
    return (result.stdout + result.stderr)[-4000:]


def _compact(text: str) -> str:
    try:
        return json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError:
        return text
