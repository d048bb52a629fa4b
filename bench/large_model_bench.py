"""A model with 2 GB of weights through both backends: build time, kiln's peak memory, the layers, and what a
push after a one-file change sends.

The model is the sklearn_iris fixture plus ``--files`` weight files of float32 noise (``--size-gb`` in all;
like trained weights, deflate saves about 7% of them), made in kiln's user cache and removed afterwards.
Each backend first builds the model without the weights (so the environment's layers are cached and the
timed builds measure the model), then:

- **build**: the model with its weights, ``--push`` to a real local registry (Debian's docker-registry)
  into an empty repository, timed, with the peak RSS of kiln (``wait4``: the largest of kiln and the
  processes it waited for; the Docker engine's own memory is not kiln's);
- **small change**: one small file of the model rewritten, rebuilt and pushed again;
- **large change**: a MiB in the middle of one weight file rewritten, rebuilt and pushed again.

For each: seconds, peak RSS, the blobs and bytes the push uploaded (kiln's ``Pushed`` line, and the
registry's own log), and the model's layers (count, sizes). Results go to the ``large_model_bench``
section of docs/benchmarks.md.

    .venv/bin/python bench/large_model_bench.py                    # about 15 minutes, ~14 GB of disk
    .venv/bin/python bench/large_model_bench.py --size-gb 0.5 --no-write --backends oci

Docker backend builds run under /tmp/kiln-docker.lock, as the tests do.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures import models
from tests.registry_support import Registry, started_registry

from bench import report

REPO = Path(__file__).resolve().parents[1]
SECTION = "large_model_bench"
BASE = "kiln-test/python:3.11-slim"
LOCK = "/tmp/kiln-docker.lock"
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
_PUSHED = re.compile(r"^Pushed (\S+): (\d+) blobs uploaded \((\d+) bytes\), (\d+) already there", re.M)
CHUNK = 64 << 20


@dataclass(frozen=True)
class Step:
    """One timed ``kiln build`` with ``--push``."""

    backend: str
    kind: str
    """``build``, ``small change`` or ``large change``."""
    seconds: float
    own_rss: int
    """kiln's own peak RSS, bytes."""
    peak_rss: int
    """The peak RSS of kiln and the processes it waited for (uv, docker), bytes."""
    blobs: int
    sent: int
    """Bytes uploaded, as kiln reports them."""
    registry_blobs: int
    """Completed blob uploads in the registry's own log."""
    model_layers: tuple[int, ...]
    """Compressed sizes of the model's layers, in image order."""


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=float, default=2.0, help="weights in all, GB (default 2)")
    parser.add_argument("--files", type=int, default=2, help="weight files (default 2)")
    parser.add_argument("--backends", default="oci,docker", help="comma-separated (default oci,docker)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/ alone")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    return parser.parse_args(argv)


@contextmanager
def docker_lock() -> Iterator[None]:
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_weights(model: Path, size: int, files: int) -> list[Path]:
    """``files`` files of float32 noise, ``size`` bytes in all, written a chunk at a time."""
    import numpy as np

    rng = np.random.default_rng(13)
    made = []
    for number in range(files):
        path = model / "weights" / f"model-{number + 1:05d}-of-{files:05d}.bin"
        path.parent.mkdir(exist_ok=True)
        left = size // files
        with open(path, "wb") as handle:
            while left > 0:
                count = min(CHUNK, left) // 4
                handle.write(rng.standard_normal(count, dtype=np.float32).tobytes())
                left -= count * 4
        made.append(path)
    return made


def timed_kiln(args: Sequence[str], env: dict[str, str], log: Path) -> tuple[float, int, int, str]:
    """Run ``python -m kiln ARGS``: (seconds, peak RSS of kiln's own process, peak RSS of kiln and
    the processes it waited for, output), in bytes; RuntimeError when it fails."""
    started = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kiln", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        own = _HighWater(process.pid)
        own.start()
        _, status, usage = os.wait4(process.pid, 0)
        own.stop.set()
        own.join()
    seconds = time.monotonic() - started
    text = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"kiln {' '.join(args)} failed:\n{text[-3000:]}")
    return seconds, own.peak, usage.ru_maxrss * 1024, text


class _HighWater(threading.Thread):
    """Reads ``VmHWM`` (the process's own peak RSS; children not included) until told to stop."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.path = Path(f"/proc/{pid}/status")
        self.stop = threading.Event()
        self.peak = 0

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                line = next(x for x in self.path.read_text().splitlines() if x.startswith("VmHWM:"))
            except (OSError, StopIteration):  # exited (a zombie has no VmHWM)
                continue
            self.peak = max(self.peak, int(line.split()[1]) * 1024)


def model_layers(registry: Registry, repository: str, tag: str) -> tuple[int, ...]:
    """Sizes of the pushed image's model layers (history lines naming /opt/ml/model or 'kiln: model')."""

    def get(path: str, accept: str) -> dict:  # type: ignore[type-arg]
        request = urllib.request.Request(f"{registry.url}/v2/{repository}/{path}", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    manifest = get(f"manifests/{tag}", ACCEPT)
    config = get(f"blobs/{manifest['config']['digest']}", "*/*")
    made = [h.get("created_by", "") for h in config["history"] if not h.get("empty_layer")]
    return tuple(
        layer["size"]
        for layer, line in zip(manifest["layers"], made, strict=True)
        if "kiln: model" in line or "/opt/ml/model" in line
    )


class Bench:
    def __init__(self, work: Path, registry: Registry, archive: Path) -> None:
        self.work, self.registry, self.archive = work, registry, archive
        self.run = uuid.uuid4().hex[:8]
        self.logs = work / "logs"
        self.logs.mkdir()

    def step(self, backend: str, kind: str, model: Path, tag: str, *, push: bool = True) -> Step | None:
        repository = f"bench/large-{backend}-{self.run}"
        args = ["build", "-m", str(model), "-n", f"kiln-bench/large-{backend}:{self.run}"]
        if backend == "oci":
            args += ["--backend", "oci", "--base-image", f"docker-archive:{self.archive}"]
        else:
            args += ["--base-image", BASE, "--no-load-check"]
        if push:
            args += ["--push", f"{self.registry.host}/{repository}:{tag}"]
        env = {**os.environ, "KILN_OCI_CACHE": str(self.work / "oci-cache")}
        mark = self.registry.mark()
        log = self.logs / f"{backend}-{tag}.log"
        seconds, own, rss, text = timed_kiln(args, env, log)
        if not push:
            return None
        pushed = _PUSHED.search(text)
        if pushed is None:
            raise RuntimeError(f"no 'Pushed' line in {log}")
        return Step(
            backend, kind, seconds, own, rss, int(pushed.group(2)), int(pushed.group(3)),
            len(self.registry.blob_uploads(mark)), model_layers(self.registry, repository, tag),
        )  # fmt: skip


def run_backend(
    bench: Bench, backend: str, model: Path, weights: list[Path], size: int, files: int
) -> list[Step]:
    """The warm-up without weights, then the three timed steps; the model is restored afterwards."""
    held = bench.work / f"held-{backend}"
    held.mkdir()
    for path in weights:
        path.rename(held / path.name)
    bench.step(backend, "warm-up", model, "warm", push=False)
    for path in weights:
        (held / path.name).rename(path)
    steps = [bench.step(backend, "build", model, "1")]
    small = model / "weights" / "vocab.txt"
    small.write_text(small.read_text() + f"{backend}\n")
    steps.append(bench.step(backend, "small change", model, "2"))
    with open(weights[0], "r+b") as handle:
        handle.seek(size // files // 2)
        handle.write(os.urandom(1 << 20))
    steps.append(bench.step(backend, "large change", model, "3"))
    return [step for step in steps if step is not None]


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    size = int(opts.size_gb * 1e9)
    cache = Path(os.environ.get("KILN_CACHE_DIR", Path.home() / ".cache" / "kiln")) / "bench-large-model"
    free = shutil.disk_usage(cache.parent if cache.parent.exists() else Path.home()).free
    if free < 7 * size:
        print(f"needs about {7 * size / 1e9:.0f} GB free, {free / 1e9:.0f} GB are", file=sys.stderr)
        return 2
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    backends = [b for b in opts.backends.split(",") if b]
    steps: list[Step] = []
    try:
        model = models.save("sklearn_iris", cache / "model")
        (model / "weights").mkdir()
        (model / "weights" / "vocab.txt").write_text("a\nb\n")
        started = time.monotonic()
        weights = make_weights(model, size, opts.files)
        print(f"made {size / 1e9:.1f} GB of weights in {time.monotonic() - started:.0f} s", file=sys.stderr)
        archive = cache / "base.tar"
        subprocess.run(["docker", "save", "--output", str(archive), BASE], check=True, timeout=600)
        with started_registry(cache / "registry") as registry:
            bench = Bench(cache, registry, archive)
            for backend in backends:
                # The Docker backend's four builds hold the lock together: another build between
                # them would only make this one wait again.
                with docker_lock() if backend == "docker" else nullcontext():
                    steps += run_backend(bench, backend, model, weights, size, opts.files)
                print(f"{backend} done", file=sys.stderr)
    finally:
        if not opts.keep:
            shutil.rmtree(cache, ignore_errors=True)
            for backend in backends:
                image = f"kiln-bench/large-{backend}"
                found = subprocess.run(["docker", "images", "-q", image], capture_output=True, text=True)
                for image_id in set(found.stdout.split()):
                    subprocess.run(["docker", "image", "rm", "--force", image_id], capture_output=True)
    body = section(steps, size, opts.files)
    print(body)
    if not opts.no_write:
        opts.output.write_text(report.replace_section(opts.output.read_text(), SECTION, body))
    return 0


def section(steps: Sequence[Step], size: int, files: int) -> str:
    commit = (
        os.environ.get("KILN_BENCH_COMMIT")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip()
    )
    lines = [
        f"## Large models: {size / 1e9:.1f} GB of weights (`bench/large_model_bench.py`)",
        "",
        f"Measured {dt.date.today()} at commit {commit}, on this 2-core machine with "
        f"others' work running; one run. The model: sklearn_iris plus {files} files of float32 noise, "
        f"{size / 1e9:.1f} GB in all, and a small `weights/vocab.txt`. Each row is a "
        "`kiln build ... --push` to a local docker-registry (a new tag in the same repository); "
        "the environment's layers were built before.",
        "",
        "| backend | step | build + push, s | kiln peak RSS, MB (with children) "
        "| blobs uploaded (registry log) | MB uploaded | model layers (compressed MB) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for s in steps:
        layers = " + ".join(f"{size_ / 1e6:,.0f}" for size_ in s.model_layers)
        lines.append(
            f"| {s.backend} | {s.kind} | {s.seconds:.0f} | {s.own_rss / 1e6:,.0f} ({s.peak_rss / 1e6:,.0f}) "
            f"| {s.blobs} ({s.registry_blobs}) | {s.sent / 1e6:,.1f} | {layers} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
