"""The docker client kiln drives: which binary, which engine, and whether it builds with BuildKit.

BuildKit is detected, not assumed: ``docker buildx`` when the client has it, else
``DOCKER_BUILDKIT=1 docker build`` when a tiny probe build succeeds with it (clients
before 23.0 talk to the engine's built-in BuildKit), else the classic builder.
``KILN_BUILDKIT=true|false`` forces the choice; ``KILN_DOCKER`` names the client.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kiln import envvars
from kiln.errors import BuildError, DockerUnavailableError

log = logging.getLogger(__name__)

Mode = Literal["buildx", "buildkit", "classic"]
ENV_DOCKER = "KILN_DOCKER"
ENV_BUILDKIT = "KILN_BUILDKIT"
_PROBE_DOCKERFILE = "FROM scratch\nLABEL io.kiln.probe=buildkit\n"
_UNREACHABLE = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
)
"""What the client says when it cannot reach the engine (as opposed to a failed command)."""


@dataclass(frozen=True)
class DockerCli:
    """A docker client binary and how it builds."""

    binary: str
    mode: Mode = "classic"
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    @property
    def buildkit(self) -> bool:
        return self.mode != "classic"

    def env(self) -> dict[str, str]:
        env = dict(self.environ)
        env["DOCKER_BUILDKIT"] = "0" if self.mode == "classic" else "1"
        return env

    def run(
        self,
        args: Sequence[str],
        *,
        input: str | None = None,
        timeout: float | None = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.binary, *args],
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=dict(env) if env is not None else self.env(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BuildError(f"'docker {' '.join(args[:3])}' did not finish within {timeout:.0f}s") from exc

    def stream(self, args: Sequence[str], on_line: Callable[[str], None]) -> int:
        """Run, passing each line of stdout and stderr to ``on_line`` as it comes; the exit code."""
        process = subprocess.Popen(
            [self.binary, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            env=self.env(),
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                on_line(line)
        finally:
            process.stdout.close()
            if process.poll() is None and sys.exc_info()[0] is not None:
                process.terminate()
            returncode = process.wait()
        return returncode


def find_docker(environ: Mapping[str, str] | None = None) -> DockerCli:
    """The docker client to use and its build mode; DockerUnavailableError when no engine answers."""
    environ = dict(os.environ if environ is None else environ)
    first = engine_cli(environ)
    candidates = _candidates(environ)
    forced = envvars.lookup(environ, (ENV_BUILDKIT,))
    if forced is not None and not envvars.parse_bool(*forced):
        log.debug("BuildKit disabled by %s", ENV_BUILDKIT)
        return first
    for binary in candidates:
        mode = _build_mode(binary, environ)
        if mode != "classic":
            log.debug("building with %s (%s)", binary, mode)
            return DockerCli(binary, mode, environ)
    if forced is not None:
        raise BuildError(
            f"{ENV_BUILDKIT}={forced[1]} but none of the docker clients "
            f"({', '.join(candidates)}) can use BuildKit",
            hint="install the buildx plugin, or unset KILN_BUILDKIT to use the classic builder",
        )
    log.info("BuildKit is not available (no buildx, no built-in BuildKit): using the classic builder")
    return first


def engine_cli(environ: Mapping[str, str] | None = None) -> DockerCli:
    """A docker client whose engine answers, for commands that build nothing (``load``, ``run``):
    no BuildKit probe. DockerUnavailableError when no engine answers."""
    environ = dict(os.environ if environ is None else environ)
    candidates = _candidates(environ)
    if not candidates:
        raise DockerUnavailableError(
            "the docker command was not found on PATH",
            hint="install Docker (https://docs.docker.com/engine/install/) "
            "or set KILN_DOCKER to the docker client",
        )
    cli = DockerCli(candidates[0], "classic", environ)
    check_daemon(cli)
    return cli


def check_daemon(cli: DockerCli) -> str:
    """The engine's version, or DockerUnavailableError saying how to start one."""
    result = cli.run(["version", "--format", "{{.Server.Version}}"], timeout=30)
    version = result.stdout.strip()
    if result.returncode == 0 and version:
        return version
    raise unavailable(cli, result.stderr or result.stdout)


def says_unreachable(output: str) -> bool:
    """True when a failed command's output says the engine was not reached."""
    lowered = output.lower()
    return any(marker in lowered for marker in _UNREACHABLE)


def unavailable(cli: DockerCli, output: str) -> DockerUnavailableError:
    """DockerUnavailableError naming the engine kiln tried and how to start one."""
    host = cli.environ.get("DOCKER_HOST") or "the default socket (unix:///var/run/docker.sock)"
    first = next((line.strip() for line in output.splitlines() if line.strip()), "no output")
    if "permission denied" in output.lower():
        hint = "add your user to the 'docker' group (then log in again), or run with sudo"
    else:
        hint = (
            "start the Docker engine (e.g. 'sudo systemctl start docker', 'sudo dockerd &', or open Docker "
            "Desktop), or point DOCKER_HOST at a running engine"
        )
    return DockerUnavailableError(f"no Docker engine answers at {host} ({first})", hint=hint)


def _candidates(environ: Mapping[str, str]) -> list[str]:
    chosen = environ.get(ENV_DOCKER)
    if chosen:
        path = shutil.which(chosen, path=environ.get("PATH"))
        if path is None:
            raise DockerUnavailableError(f"{ENV_DOCKER}={chosen!r} is not an executable docker client")
        return [path]
    found: list[str] = []
    for directory in [*(environ.get("PATH") or os.defpath).split(os.pathsep), "/usr/bin"]:
        path = shutil.which("docker", path=directory)
        if path and os.path.realpath(path) not in {os.path.realpath(p) for p in found}:
            found.append(path)
    return found


def _build_mode(binary: str, environ: Mapping[str, str]) -> Mode:
    cli = DockerCli(binary, "buildkit", environ)
    if cli.run(["buildx", "version"], timeout=30).returncode == 0:
        return "buildx"
    result = cli.run(["build", "--quiet", "-"], input=_PROBE_DOCKERFILE, timeout=60)
    if result.returncode != 0:
        log.debug("%s cannot build with DOCKER_BUILDKIT=1: %s", binary, result.stderr.strip()[:300])
        return "classic"
    image_id = result.stdout.strip()
    if image_id:
        cli.run(["image", "rm", image_id], timeout=30)
    return "buildkit"
