"""Run one timed image build with kiln or with ``mlflow models build-docker``, and read its log.

Both builds log to a file; the wall-clock time is the whole command as a user would run it
(host-side work, the docker build, and exporting the image). From the log we read which
builder ran (BuildKit or classic) and which Dockerfile steps came from the layer cache, so
a "cold" build that secretly reused layers is caught rather than reported.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.images import Docker

# kiln's plain progress: "    [image 8/8] COPY model /opt/ml/model  (cached)"
_KILN_STEP = re.compile(r"^\s+(\[[\w.-]+ \d+/\d+\] .*?)(  \(cached\))?$")
# BuildKit's plain progress: "#6 [3/9] RUN apt-get ...", later "#6 CACHED" or "#6 DONE 6.9s"
_BUILDKIT_STEP = re.compile(r"^#(\d+) (\[[^\]]*\d+/\d+\] .*)$")
_BUILDKIT_CACHED = re.compile(r"^#(\d+) CACHED$")
# The classic builder: "Step 3/9 : RUN apt-get ..." then " ---> Using cache"
_CLASSIC_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")


@dataclass(frozen=True)
class Steps:
    """What the build log says about the Dockerfile steps (FROM steps left out: they are the base)."""

    builder: str
    """``BuildKit`` or ``classic``, as seen in the log."""
    run: tuple[str, ...]
    cached: tuple[str, ...]


@dataclass(frozen=True)
class Build:
    """One timed build."""

    tool: str
    kind: str
    repeat: int
    seconds: float
    image: str
    steps: Steps
    log: str


def read_steps(log: str) -> Steps:
    """The steps of a kiln, BuildKit or classic build log, and which of them were cached."""
    lines = log.splitlines()
    kiln_steps = [m for m in map(_KILN_STEP.match, lines) if m]
    if kiln_steps:  # kiln does not say which builder it used: the caller knows (KILN_BUILDKIT)
        return _steps("", [(m.group(1), bool(m.group(2))) for m in kiln_steps])
    names: dict[str, str] = {}
    cached_ids: set[str] = set()
    for line in lines:
        if m := _BUILDKIT_STEP.match(line):
            names.setdefault(m.group(1), m.group(2))
        elif m := _BUILDKIT_CACHED.match(line):
            cached_ids.add(m.group(1))
    if names:
        return _steps("BuildKit", [(name, i in cached_ids) for i, name in names.items()])
    pairs, current = [], None
    for line in lines:
        if m := _CLASSIC_STEP.match(line):
            if current is not None:
                pairs.append((current, False))
            current = f"[{m.group(1)}] {m.group(2)}"
        elif current is not None and "Using cache" in line:
            pairs.append((current, True))
            current = None
    if current is not None:
        pairs.append((current, False))
    return _steps("classic" if pairs else "unknown", pairs)


def _steps(builder: str, pairs: Sequence[tuple[str, bool]]) -> Steps:
    kept = [(name, cached) for name, cached in pairs if not re.search(r"\] FROM ", name)]
    return Steps(
        builder=builder,
        run=tuple(name for name, cached in kept if not cached),
        cached=tuple(name for name, cached in kept if cached),
    )


def _timed(cmd: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path) -> tuple[float, str]:
    began = time.monotonic()
    with log.open("wb") as out:
        done = subprocess.run(list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=dict(env), cwd=cwd, check=False)  # fmt: skip
    seconds = time.monotonic() - began
    text = log.read_text(errors="replace")
    if done.returncode != 0:
        tail = "\n".join(text.splitlines()[-40:])
        raise RuntimeError(f"build failed ({done.returncode}): {' '.join(cmd)}\n{tail}")
    return seconds, text


@dataclass(frozen=True)
class KilnBuilder:
    """``kiln build`` from a frozen copy of kiln's sources, with its own caches."""

    python: str
    snapshot: Path
    """Directory holding the ``kiln`` package to run (put first on PYTHONPATH)."""
    base_image: str
    docker: Docker
    host_pip_config: bool = False
    extra_args: tuple[str, ...] = ()
    """Appended to every command (``--backend oci --output docker``, ``--push REF``)."""

    def command(self, model: Path, image: str, *, no_cache: bool) -> list[str]:
        cmd = [
            self.python,
            "-m",
            "kiln",
            "build",
            "-m",
            str(model),
            "-n",
            image,
            "--base-image",
            self.base_image,
        ]
        cmd += self.extra_args
        return [*cmd, "--no-cache"] if no_cache else cmd

    def env(self, caches: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(self.snapshot),
            KILN_CACHE_DIR=str(caches / "kiln"),
            UV_CACHE_DIR=str(caches / "uv"),
            PIP_CACHE_DIR=str(caches / "pip"),
            KILN_DOCKER=self.docker.binary,
            KILN_BUILDKIT="true" if self.docker.buildkit else "false",
        )
        if not self.host_pip_config:
            # Fetch from PyPI only, like MLflow's pip inside its build: not from this host's
            # local wheel mirrors (pip.conf find-links / file:// extra indexes).
            env["PIP_CONFIG_FILE"] = os.devnull
            for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "UV_FIND_LINKS",
                         "UV_EXTRA_INDEX_URL", "UV_INDEX_URL", "UV_INDEX", "UV_DEFAULT_INDEX"):  # fmt: skip
                env.pop(name, None)
        return env

    def build(self, model: Path, image: str, caches: Path, log: Path, *, kind: str, repeat: int) -> Build:
        no_cache = kind == "cold"
        if no_cache:
            self.docker.prune_cache_mounts()
        self.docker.images.append(image)
        seconds, text = _timed(
            self.command(model, image, no_cache=no_cache), self.env(caches), log, log.parent
        )
        steps = dataclasses.replace(
            read_steps(text), builder="BuildKit" if self.docker.buildkit else "classic"
        )
        return Build("kiln", kind, repeat, seconds, image, steps, str(log))


@dataclass(frozen=True)
class MlflowBuilder:
    """``mlflow models build-docker --env-manager local`` from MLflow's own venv."""

    venv: Path
    shim: Path
    """Directory whose ``docker`` is the client kiln builds with, first on PATH."""
    docker: Docker

    def command(self, model: Path, image: str) -> list[str]:
        mlflow = str(self.venv / "bin" / "mlflow")
        return [mlflow, "models", "build-docker", "-m", str(model), "-n", image, "--env-manager", "local"]

    def env(self) -> dict[str, str]:
        env = self.docker.env()
        env["PATH"] = os.pathsep.join([str(self.shim), str(self.venv / "bin"), env.get("PATH", "")])
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        return env

    def build(self, model: Path, image: str, log: Path, *, kind: str, repeat: int) -> Build:
        self.docker.images.append(image)
        seconds, text = _timed(self.command(model, image), self.env(), log, log.parent)
        return Build("mlflow", kind, repeat, seconds, image, read_steps(text), str(log))


def make_shim(directory: Path, docker_binary: str) -> Path:
    """A directory with ``docker`` -> ``docker_binary``, so MLflow's ``docker build`` uses that client."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "docker"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(docker_binary)
    return directory
