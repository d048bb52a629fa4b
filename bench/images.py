"""Docker chores of the build benchmark: the MLflow base stand-in, image facts, timed container starts.

Every image and container made here is registered in a :class:`Docker` and removed by
:meth:`Docker.cleanup`, so a failed run leaves nothing behind. Other people's images are
never touched: a tag is only (re)pointed when it is absent or carries :data:`STAND_IN`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAND_IN = "io.kiln.bench.stand-in"
"""Label on every image this benchmark made to stand in for a registry image."""

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# What python:X.Y-slim has and Debian's python3 lacks, for MLflow's in-image ``pip install``:
# a pip that PEP 668 does not block, and the host's CA bundle (the proxy's CA) for PyPI.
_MLFLOW_BASE_DOCKERFILE = """\
FROM {parent}
RUN rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \\
 && apt-get update && apt-get install -y --no-install-recommends python3-pip \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
"""


class DockerError(RuntimeError):
    pass


@dataclass
class Docker:
    """One docker client, how it builds, and what this run created (to remove it afterwards)."""

    binary: str
    buildkit: bool
    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    """Tags and ids to remove at the end, in order."""

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_BUILDKIT"] = "1" if self.buildkit else "0"
        return env

    def run(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 600) -> str:
        done = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, input=input, env=self.env(),
            timeout=timeout, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise DockerError(
                f"docker {' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
            )
        return done.stdout.strip()

    def inspect(self, ref: str) -> dict[str, Any] | None:
        out = self.run("image", "inspect", ref, check=False)
        if not out:
            return None
        details: list[dict[str, Any]] = json.loads(out)
        return details[0] if details else None

    def size(self, ref: str) -> int:
        """``docker image inspect --format '{{.Size}}'``: bytes of all the image's layers."""
        return int(self.run("image", "inspect", "--format", "{{.Size}}", ref))

    def layers_above(self, ref: str, base: str) -> list[tuple[int, str]]:
        """``(bytes, created by)`` of the layers ``ref`` adds to ``base``, newest first."""
        mine, theirs = self._history(ref), self._history(base)
        return mine[: len(mine) - len(theirs)]

    def _history(self, ref: str) -> list[tuple[int, str]]:
        out = self.run("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", ref)
        rows = [line.partition("\t") for line in out.splitlines() if line.strip()]
        return [(int(size), created.strip()) for size, _tab, created in rows]

    def versions(self) -> str:
        return self.run("version", "--format", "client {{.Client.Version}}, engine {{.Server.Version}}")

    def labels(self, ref: str) -> dict[str, str]:
        details = self.inspect(ref) or {}
        return dict((details.get("Config") or {}).get("Labels") or {})

    def build_quiet(self, context: Path, tag: str, dockerfile: str, labels: dict[str, str]) -> str:
        (context / "Dockerfile").write_text(dockerfile)
        args = ["build", "--quiet", "-t", tag]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        return self.run(*args, str(context))

    def prune_cache_mounts(self) -> None:
        """Drop BuildKit's ``RUN --mount=type=cache`` contents (apt's), which ``--no-cache`` keeps."""
        if self.buildkit:
            self.run("builder", "prune", "--force", "--filter", "type=exec.cachemount")

    def prune_build_cache_below(self, marker: str) -> int:
        """Prune the BuildKit cache records of steps at or after one whose description has ``marker``.

        MLflow's cold builds start from a one-off base, so their cache records can never be
        reused; left alone they would pile up (about 2 GB per cold build). Only those chains
        are removed, nobody else's cache: one record per ``docker builder prune --filter id=``
        (several id filters match nothing), leaves first (a record with children stays).
        Returns how many records went.
        """
        if not self.buildkit:
            return 0
        removed = 0
        for _ in range(100):
            records = json.loads(self.run("system", "df", "-v", "--format", "{{json .BuildCache}}") or "[]")
            children: dict[str, list[str]] = {}
            for record in records:
                children.setdefault(record.get("Parent") or "", []).append(record["ID"])
            todo = [r["ID"] for r in records if marker in (r.get("Description") or "")]
            doomed: set[str] = set()
            while todo:
                record_id = todo.pop()
                if record_id not in doomed:
                    doomed.add(record_id)
                    todo.extend(children.get(record_id, ()))
            leaves = sorted(record_id for record_id in doomed if not children.get(record_id))
            if not leaves:
                break
            before = removed
            for leaf in leaves:
                out = self.run("builder", "prune", "--force", "--filter", f"id={leaf}", check=False)
                removed += int(leaf in out)
            if removed == before:  # in use, or not ours to prune: stop rather than spin
                break
        return removed

    def remove_container(self, name: str) -> None:
        self.run("rm", "--force", "--volumes", name, check=False)
        if name in self.containers:
            self.containers.remove(name)

    def cleanup(self, keep: Sequence[str] = ()) -> None:
        for name in list(self.containers):
            self.remove_container(name)
        for ref in reversed(self.images):
            if ref not in keep:
                self.run("image", "rm", ref, check=False)
        self.images.clear()


def mlflow_base(docker: Docker, parent: str) -> str:
    """The stand-in for ``python:X.Y-slim`` (``parent`` + pip + the host's CA bundle), made once.

    Its tag holds a digest of what it is made from, so it is rebuilt only when the parent,
    the recipe or the CA bundle change; it is kept between runs like the MLflow venv.
    """
    parent_id = docker.run("image", "inspect", "--format", "{{.Id}}", parent)
    recipe = _MLFLOW_BASE_DOCKERFILE.format(parent=parent)  # BuildKit takes no image id in FROM
    key = hashlib.sha256(parent_id.encode() + recipe.encode() + CA_BUNDLE.read_bytes()).hexdigest()[:12]
    tag = f"kiln-bench/mlflow-base:{key}"
    if docker.inspect(tag) is None:
        print(f"bench: making {tag} from {parent} (+ python3-pip, + the host's CA bundle)", flush=True)
        with tempfile.TemporaryDirectory(prefix="kiln-bench-base-") as tmp:
            shutil.copyfile(CA_BUNDLE, Path(tmp) / "ca-certificates.crt")
            docker.build_quiet(
                Path(tmp), tag, recipe, {STAND_IN: "mlflow-base", "io.kiln.bench.parent": parent}
            )
    return tag


def point_stand_in(docker: Docker, name: str, base: str) -> str:
    """Tag a fresh image (``base`` + a one-off 33-byte file) as ``name``; return its id.

    New layer contents each time mean no build step of MLflow's can come from the layer
    cache (a new label alone is not enough: BuildKit keys the base by its layers): that is
    how its builds are made cold without pruning anybody else's build cache. Refuses to
    move ``name`` when it is a real image (one without :data:`STAND_IN`).
    """
    if docker.inspect(name) is not None and STAND_IN not in docker.labels(name):
        raise DockerError(
            f"{name} exists and is not this benchmark's stand-in; refusing to re-tag it "
            f"(remove it, or let MLflow build from it by hand)"
        )
    nonce = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="kiln-bench-nonce-") as tmp:
        (Path(tmp) / "nonce").write_text(nonce + "\n")
        image_id = docker.build_quiet(
            Path(tmp),
            name,
            f"FROM {base}\nCOPY nonce /etc/kiln-bench-nonce\n",
            {STAND_IN: "python-slim", "io.kiln.bench.nonce": nonce},
        )
    docker.images.append(image_id)
    return image_id


def untag_stand_in(docker: Docker, name: str) -> None:
    """Remove the ``name`` tag if (and only if) it points at one of our stand-ins."""
    if docker.inspect(name) is not None and STAND_IN in docker.labels(name):
        docker.run("image", "rm", name, check=False)


@dataclass(frozen=True)
class Started:
    """One timed start of an image: seconds from ``docker run`` to the first 200 on ``/ping``."""

    seconds: float
    container: str
    base_url: str


def start(docker: Docker, image: str, name: str, port: int, timeout: float = 180.0) -> Started:
    """``docker run -d`` the image on ``port`` and wait for ``GET /ping`` to answer 200."""
    began = time.monotonic()
    docker.containers.append(name)
    docker.run("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", image)
    url = f"http://127.0.0.1:{port}"
    polls = 0
    while time.monotonic() - began < timeout:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return Started(time.monotonic() - began, name, url)
        except (urllib.error.URLError, OSError):
            pass
        polls += 1
        # Asking docker costs a process: only now and then, to stop early when the container died.
        if (
            polls % 40 == 0
            and docker.run("inspect", "--format", "{{.State.Running}}", name, check=False) != "true"
        ):
            break
        time.sleep(0.05)
    logs = subprocess.run([docker.binary, "logs", "--tail", "30", name], capture_output=True, text=True)
    raise DockerError(
        f"{image} did not answer 200 on /ping within {timeout:.0f}s:\n{logs.stdout}{logs.stderr}"
    )
