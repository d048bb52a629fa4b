"""The Docker engine as a Builder: drives the docker CLI, BuildKit when usable, else the classic builder.

BuildKit is detected, not assumed: ``docker buildx`` when the client has it, else
``DOCKER_BUILDKIT=1 docker build`` when a tiny probe build succeeds with it (clients
before 23.0 talk to the engine's built-in BuildKit), else the classic builder.
``KILN_BUILDKIT=true|false`` forces the choice; ``KILN_DOCKER`` names the client.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kiln import envvars
from kiln.backends.base import BuildRequest, BuiltImage
from kiln.backends.buildlog import BuildLogParser
from kiln.backends.progress import Progress
from kiln.errors import BuildError, DockerUnavailableError
from kiln.image.probe import BaseImageInfo, ProbeCache, probe_base_image

log = logging.getLogger(__name__)

Mode = Literal["buildx", "buildkit", "classic"]
ENV_DOCKER = "KILN_DOCKER"
ENV_BUILDKIT = "KILN_BUILDKIT"
_PROBE_DOCKERFILE = "FROM scratch\nLABEL io.kiln.probe=buildkit\n"
_UNREACHABLE = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
    "no such file or directory",
    "connection refused",
    "permission denied while trying to connect",
)


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
    candidates = _candidates(environ)
    if not candidates:
        raise DockerUnavailableError(
            "the docker command was not found on PATH",
            hint="install Docker (https://docs.docker.com/engine/install/) "
            "or set KILN_DOCKER to the docker client",
        )
    first = DockerCli(candidates[0], "classic", environ)
    check_daemon(first)
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


def check_daemon(cli: DockerCli) -> str:
    """The engine's version, or DockerUnavailableError saying how to start one."""
    result = cli.run(["version", "--format", "{{.Server.Version}}"], timeout=30)
    version = result.stdout.strip()
    if result.returncode == 0 and version:
        return version
    raise _unavailable(cli, result.stderr or result.stdout)


def _unavailable(cli: DockerCli, output: str) -> DockerUnavailableError:
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


class DockerBuilder:
    """Builds with the docker CLI; probes base images with ``docker run``."""

    def __init__(self, cli: DockerCli, cache: ProbeCache | None = None) -> None:
        self.cli = cli
        self._cache = cache or ProbeCache()

    @classmethod
    def connect(cls, environ: Mapping[str, str] | None = None) -> DockerBuilder:
        return cls(find_docker(environ))

    @property
    def buildkit(self) -> bool:
        return self.cli.buildkit

    def inspect(self, ref: str) -> dict[str, Any] | None:
        """``docker image inspect`` of ``ref`` as a dict, or None when there is no such image."""
        result = self.cli.run(["image", "inspect", ref], timeout=60)
        if result.returncode != 0:
            if any(marker in result.stderr.lower() for marker in _UNREACHABLE[:3]):
                raise _unavailable(self.cli, result.stderr)
            return None
        data = json.loads(result.stdout)
        return data[0] if data else None

    def probe(self, image: str, *, platform: str | None = None) -> BaseImageInfo:
        details = self.inspect(image)
        if details is None:
            self._pull(image, platform)
            details = self.inspect(image)
            if details is None:
                raise BuildError(f"base image {image!r} is still missing after 'docker pull'")
        os_arch = "/".join(
            part
            for part in (details.get("Os", "linux"), details.get("Architecture"), details.get("Variant"))
            if part
        )

        def run_script(script: str) -> str:
            args = ["run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "/bin/sh"]
            if platform:
                args += ["--platform", platform]
            result = self.cli.run([*args, image, "-c", script], timeout=120)
            if result.returncode != 0:
                raise BuildError(
                    f"could not inspect base image {image!r}: running /bin/sh in it failed "
                    f"(exit {result.returncode}); kiln needs a base image with a shell",
                    log_tail=(result.stderr or result.stdout)[-2000:],
                )
            return result.stdout

        return probe_base_image(
            image, image_id=str(details["Id"]), os_arch=os_arch, run_script=run_script, cache=self._cache
        )

    def _pull(self, image: str, platform: str | None) -> None:
        log.info("pulling base image %s", image)
        args = ["pull", "--quiet", *(["--platform", platform] if platform else []), image]
        result = self.cli.run(args, timeout=1800)
        if result.returncode != 0:
            raise BuildError(
                f"base image {image!r} is not present locally and could not be pulled",
                hint="check the name, log in to its registry ('docker login'), or pass --base-image "
                "naming a local image",
                log_tail=(result.stderr or result.stdout)[-2000:],
            )

    def build(self, request: BuildRequest, progress: Progress) -> BuiltImage:
        started = time.monotonic()
        parser = BuildLogParser(buildkit=self.buildkit, progress=progress)
        with tempfile.TemporaryDirectory(prefix="kiln-iid-") as tmp:
            iidfile = Path(tmp) / "iid"
            args = self._build_args(request, iidfile)
            log.debug("running %s %s", self.cli.binary, " ".join(args))
            output: deque[str] = deque(maxlen=40)

            def on_line(line: str) -> None:
                output.append(line)
                parser.feed(line)

            returncode = self.cli.stream(args, on_line)
            if returncode != 0:
                text = "".join(output)
                if any(marker in text.lower() for marker in _UNREACHABLE[:3]):
                    raise _unavailable(self.cli, text)
                step = parser.failed_step
                raise BuildError(
                    f"docker build of {request.tag!r} failed"
                    + (f" at step {step}" if step else f" (exit {returncode})"),
                    log_tail=parser.failure_tail() or "".join(output),
                )
            image_id = iidfile.read_text().strip()
        details = self.inspect(image_id) or {}
        layers = tuple(details.get("RootFS", {}).get("Layers") or ())
        return BuiltImage(
            tag=request.tag,
            image_id=image_id,
            layers=layers,
            steps=parser.steps,
            builder="buildkit" if self.buildkit else "classic",
            seconds=time.monotonic() - started,
        )

    def _build_args(self, request: BuildRequest, iidfile: Path) -> list[str]:
        args = ["buildx", "build", "--load"] if self.cli.mode == "buildx" else ["build"]
        if self.buildkit:
            args.append("--progress=plain")
        args += ["--tag", request.tag, "--iidfile", str(iidfile)]
        if request.no_cache:
            args.append("--no-cache")
        if request.platform:
            args += ["--platform", request.platform]
        for key, value in request.build_args:
            args += ["--build-arg", f"{key}={value}"]
        args += ["--file", str(request.context / "Dockerfile"), str(request.context)]
        return args
