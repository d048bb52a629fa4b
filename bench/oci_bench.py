"""Daemonless builds: ``kiln build --backend oci`` next to the Docker backend and MLflow, on the same model.

One run measures, side by side: the cold build of each (kiln's two backends with empty caches,
MLflow from a one-off base), the rebuild after a model-only change with the image ending up in
the Docker engine for all three (``--output docker`` for the OCI backend), and, for the OCI
backend, a model-only rebuild that pushes to a real local registry (Debian's docker-registry)
instead: its time and the bytes it uploads (target: under 5 s). Medians go into the
``oci_bench`` section of docs/benchmarks.md.

    .venv/bin/python bench/oci_bench.py                   # about 10 minutes
    .venv/bin/python bench/oci_bench.py --cold 1 --rebuilds 1 --no-write

It reuses build_bench's setup (the fixture model, MLflow's venv and base stand-in, a frozen copy of
kiln); the OCI backend builds on ``docker save kiln-test/python:3.11-slim`` (``docker-archive:``), the
same base the Docker backend uses.

With ``--two-platform`` (the default when qemu-aarch64 is registered with binfmt or the arm64 base
exists) it also times ``--platform linux/amd64,linux/arm64`` next to ``--platform linux/amd64`` on a
two-platform OCI layout of the test base and its arm64 twin (``tests/oci/multiarch.py``), cold and
after a model-only change, with the model's requirements trimmed to what it imports (MLflow records
torch+cpu from the saving environment, which has no arm64 wheel), both with ``--no-load-check`` (a
multi-platform build runs no load check; a single-platform one would, about 4 s here).
``bench/oci_platforms_bench.py`` times these rows alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import build_bench, builds, images, report, servers

REPO = Path(__file__).resolve().parents[1]
SECTION = "oci_bench"
KILN_BASE = build_bench.KILN_BASE
TOOLS = ("docker", "oci", "mlflow")
PLATFORM_TOOLS = {"oci-1p": "linux/amd64", "oci-2p": "linux/amd64,linux/arm64"}
"""The two-platform comparison: the same trimmed model and two-platform base, one or two platforms."""
PLATFORM_ARGS = ("--backend", "oci", "--output", "docker", "--no-load-check", "--platform")
"""No load check on either side: a multi-platform build does none."""
UNUSED = ("torch", "pytest", "rich", "tqdm")
_LAYERS = re.compile(r"(\d+) of (\d+) layers from cache")
_PUSHED = re.compile(r"^Pushed (\S+): (\d+) blobs uploaded \((\d+) bytes\), (\d+) already there", re.M)


@dataclass(frozen=True)
class Timed:
    """One timed build."""

    tool: str
    """``docker`` (kiln's Docker backend), ``oci`` (kiln's OCI backend), ``oci-push``, ``mlflow``."""
    kind: str
    """``cold`` or ``rebuild``."""
    repeat: int
    seconds: float
    layers_reused: str = ""
    """``3 of 4`` for the OCI backend, from its output."""
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    registry_uploads: int = 0
    """Completed blob uploads the registry itself logged during the build."""


def parse_output(text: str) -> tuple[str, int, int]:
    """(``reused of total``, blobs uploaded, bytes uploaded) from ``kiln build --backend oci``'s output."""
    layers = _LAYERS.search(text)
    pushed = _PUSHED.search(text)
    return (
        f"{layers.group(1)} of {layers.group(2)}" if layers else "",
        int(pushed.group(2)) if pushed else 0,
        int(pushed.group(3)) if pushed else 0,
    )


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cold", type=int, default=1, help="cold builds per tool (default 1)")
    parser.add_argument("--rebuilds", type=int, default=3, help="model-only rebuilds per tool (default 3)")
    parser.add_argument("--kiln-source", choices=("head", "worktree"), default="head")
    parser.add_argument("--host-pip-config", action="store_true", help="see bench/build_bench.py")
    parser.add_argument("--mlflow-venv", type=Path, default=REPO / ".cache" / "bench" / "mlflow-venv")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/ alone")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument(
        "--two-platform", action=argparse.BooleanOptionalAction, default=None,
        help="also time linux/amd64,linux/arm64 next to linux/amd64 (default: when arm64 can be built)",
    )  # fmt: skip
    return parser.parse_args(argv)


class Bench:
    """The three builders, their caches, and the registry the OCI backend pushes to."""

    def __init__(
        self,
        work: Path,
        docker: images.Docker,
        snapshot: Path,
        archive: Path,
        registry: str,
        opts: argparse.Namespace,
        venv: Path,
    ) -> None:
        self.work, self.docker, self.registry = work, docker, registry
        self.logs = work / "logs"
        self.logs.mkdir()
        self.kiln = builds.KilnBuilder(sys.executable, snapshot, KILN_BASE, docker, opts.host_pip_config)
        self.oci = dataclasses.replace(
            self.kiln,
            base_image=f"docker-archive:{archive}",
            extra_args=("--backend", "oci", "--output", "docker"),
        )
        self.mlflow = builds.MlflowBuilder(venv, builds.make_shim(work / "shim", docker.binary), docker)
        self.caches = {"docker": work / "caches-docker", "oci": work / "caches-oci"}
        self.caches.update({tool: work / f"caches-{tool}" for tool in PLATFORM_TOOLS})
        self.run_id = uuid.uuid4().hex[:8]
        self.pushes = 0
        self.multi_base: str | None = None
        """``oci:LAYOUT:3.11-slim``, the two-platform base, when the two-platform rows are measured."""
        self.trimmed: Path | None = None

    def build(self, tool: str, model: Path, kind: str, repeat: int) -> Timed:
        image = f"kiln-bench/oci-iris:{self.run_id}-{tool}-{kind}{repeat}"
        log = self.logs / f"{tool}-{kind}{repeat}.log"
        if tool == "mlflow":
            built = self.mlflow.build(model, image, log, kind=kind, repeat=repeat)
            return Timed(tool, kind, repeat, built.seconds)
        if kind == "cold":
            self.caches[tool] = self.work / f"caches-{tool}-{repeat}"
        builder = self.kiln if tool == "docker" else self.oci
        if tool in PLATFORM_TOOLS:
            assert self.multi_base is not None and self.trimmed is not None
            model = self.trimmed
            builder = dataclasses.replace(
                self.oci,
                base_image=self.multi_base,
                extra_args=(*PLATFORM_ARGS, PLATFORM_TOOLS[tool]),
            )
        if tool == "oci-push":
            self.pushes += 1
            target = f"{self.registry}/bench/iris:{self.pushes}"
            builder = dataclasses.replace(self.oci, extra_args=("--backend", "oci", "--push", target))
        cache = self.caches[tool if tool in ("docker", *PLATFORM_TOOLS) else "oci"]
        built = builder.build(model, image, cache, log, kind=kind, repeat=repeat)
        reused, blobs, sent = parse_output(Path(built.log).read_text())
        return Timed(tool, kind, repeat, built.seconds, reused, blobs, sent)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _seconds(runs: Sequence[Timed], tool: str, kind: str) -> list[float]:
    return [r.seconds for r in runs if r.tool == tool and r.kind == kind]


def _table(runs: Sequence[Timed]) -> str:
    def cell(tool: str, kind: str) -> str:
        values = _seconds(runs, tool, kind)
        return f"{_median(values):.1f}" if values else "n/a"

    platform_rows = []
    if _seconds(runs, "oci-2p", "cold"):
        platform_rows = [
            f"| two platforms (linux/amd64,linux/arm64) vs one (linux/amd64), trimmed model: cold, s "
            f"| | {cell('oci-2p', 'cold')} vs {cell('oci-1p', 'cold')} | |",
            f"| the same after a model-only change, s | | {cell('oci-2p', 'rebuild')} vs "
            f"{cell('oci-1p', 'rebuild')} | |",
        ]
    pushes = [r for r in runs if r.tool == "oci-push" and r.kind == "rebuild"]
    push_s = _median([r.seconds for r in pushes])
    sent = _median([r.bytes_uploaded for r in pushes])
    blobs = sorted({r.registry_uploads for r in pushes})
    met = "**yes**" if push_s < 5 else "**no**"
    n_cold, n_re = len(_seconds(runs, "oci", "cold")), len(_seconds(runs, "oci", "rebuild"))
    return "\n".join(
        [
            "| | kiln `--backend docker` | kiln `--backend oci` | MLflow `build-docker` |",
            "|---|---:|---:|---:|",
            f"| cold build, s (median of {n_cold}) | {cell('docker', 'cold')} | {cell('oci', 'cold')} "
            f"| {cell('mlflow', 'cold')} |",
            f"| rebuild after a model-only change, image in Docker, s (median of {n_re}) "
            f"| {cell('docker', 'rebuild')} | {cell('oci', 'rebuild')} | {cell('mlflow', 'rebuild')} |",
            f"| model-only rebuild **and push** to a registry, s (median of {len(pushes)}; target < 5 s) "
            f"| | {push_s:.1f} ({met}) | |",
            f"| bytes uploaded by that push | | {sent:,.0f} ({'/'.join(map(str, blobs))} blobs) | |",
            *platform_rows,
        ]
    )


def _runs(runs: Sequence[Timed], tool: str, kind: str) -> str:
    return ", ".join(f"{s:.1f}" for s in _seconds(runs, tool, kind)) + " s"


def _section(runs: Sequence[Timed], load: str, commit: str, machine: str, first_push: Timed | None) -> str:
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/oci_bench.py", *sys.argv[1:]])
    reused = sorted({r.layers_reused for r in runs if r.tool in ("oci", "oci-push") and r.kind == "rebuild"})
    first = (
        f"The first push of the image (after the cold build, into an empty repository) sent "
        f"{first_push.blobs_uploaded} blobs, {first_push.bytes_uploaded / 1e6:.0f} MB, "
        f"in {first_push.seconds:.1f} s "
        "(the whole command)."
        if first_push
        else ""
    )
    return f"""
## Daemonless builds: `kiln build --backend oci`

Re-run (needs Docker for the two other builders and for `--output docker`, `kiln-test/python:3.11-slim`,
Debian's `docker-registry`, PyPI and a Debian mirror):

```bash
.venv/bin/python bench/oci_bench.py             # about 10 minutes; rewrites this section
.venv/bin/python bench/oci_bench.py --help
```

Measured {dt.date.today().isoformat()} by `bench/oci_bench.py`, the three builders side by side in one run
on the `sklearn_iris` fixture; the machine was shared with other work (load average {load}), so
absolute times are noisy and only comparable within the run.

{_table(runs)}

Each run: cold: docker backend {_runs(runs, "docker", "cold")}, OCI backend {_runs(runs, "oci", "cold")},
MLflow {_runs(runs, "mlflow", "cold")}; rebuild: docker backend {_runs(runs, "docker", "rebuild")},
OCI backend {_runs(runs, "oci", "rebuild")}, MLflow {_runs(runs, "mlflow", "rebuild")};
rebuild and push {_runs(runs, "oci-push", "rebuild")}. The OCI backend's rebuilds reused
{", ".join(reused) or "?"} layers. {first}

**What is measured.** Wall-clock time of the whole `kiln build` / `mlflow models build-docker`
command, as build_bench measures it (see the section above for kiln's Docker backend and MLflow:
the same setup, base images, package sources and cold-build rules). For the OCI backend:

- **Cold**: an empty `KILN_CACHE_DIR` (so also an empty OCI blob store and layer cache) and `--no-cache`:
  the lock is resolved, the wheels downloaded, the base's layer compressed into the blob store
  (a `docker save` archive's layers are uncompressed tars) and its filesystem indexed, the
  environment installed on the host with bytecode, every layer written, then the image streamed
  into `docker load` (`--output docker`).
  Where the cold build spends more than the Docker backend's: it gzips every layer on the host (the
  base's 170 MB once, the environment's 400 MB), which a Docker engine does only when it pushes, and
  it compiles bytecode on the host; what it saves is every later build and push.
- **Rebuild** (`model.skops` overwritten with retrained weights, as in build_bench): the same command,
  `--output docker` again; the system-packages, environment and kiln layers come from the layer cache,
  the model layer is written, and the whole image is streamed into `docker load` (which skips the
  layers it has).
- **Rebuild and push**: another retrained model, `--push REGISTRY/bench/iris:N` only (no Docker
  involved), to a `docker-registry` on 127.0.0.1 into which the cold image had been pushed; bytes and
  blobs as kiln reports them (`PushReport`), blobs also counted in the registry's own log.

Commands (`MODEL` the saved fixture, `NAME` a fresh tag per build, kiln from a frozen copy at git {commit}):

```bash
python -m kiln build -m MODEL -n NAME --base-image {KILN_BASE} [--no-cache]
python -m kiln build -m MODEL -n NAME --backend oci --base-image docker-archive:BASE.tar \\
    --output docker [--no-cache]
python -m kiln build -m MODEL -n NAME --backend oci --base-image docker-archive:BASE.tar \\
    --push 127.0.0.1:PORT/bench/iris:N
mlflow models build-docker -m MODEL -n NAME --env-manager local
```

Machine: {machine}

Command: `{command}`
"""


def _two_platform(opts: argparse.Namespace, bench: Bench, docker: images.Docker, model: Path) -> bool:
    """Set up the two-platform rows (base layout, trimmed model) unless told not to or arm64 cannot be
    built here; True when they are measured."""
    from tests.oci.multiarch import ARM64_BASE, binfmt_ready, ensure_arm64_base, write_multiarch_layout

    try:
        docker.run("image", "inspect", ARM64_BASE)
        present = True
    except images.DockerError:
        present = False
    if opts.two_platform is False or (opts.two_platform is None and not present and binfmt_ready()):
        print("bench: two-platform rows skipped (no arm64 base and no binfmt to make one)", flush=True)
        return False
    ensure_arm64_base(docker.binary)
    saves = {"amd64": bench.work / "base.tar", "arm64": bench.work / "base-arm64.tar"}
    docker.run("save", "--output", str(saves["arm64"]), ARM64_BASE, timeout=600)
    write_multiarch_layout(bench.work / "multi-base", saves)
    bench.multi_base = f"oci:{bench.work / 'multi-base'}:3.11-slim"
    bench.trimmed = bench.work / "model-trimmed"
    shutil.copytree(model, bench.trimmed)
    lines = (bench.trimmed / "requirements.txt").read_text().splitlines()
    kept = [line for line in lines if line.split("==")[0] not in UNUSED]
    (bench.trimmed / "requirements.txt").write_text("".join(f"{line}\n" for line in kept))
    return True


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    from tests.registry_support import started_registry

    from kiln.backends.docker.cli import find_docker

    cli = find_docker()
    docker = images.Docker(cli.binary, cli.buildkit)
    build_bench._ensure_kiln_base(docker, KILN_BASE)
    work = Path(tempfile.mkdtemp(prefix="kiln-oci-bench-"))
    mlflow_from = ""
    began = time.monotonic()
    try:
        model = build_bench._save_model(work / "model")
        venv = servers.ensure_mlflow_venv(opts.mlflow_venv, model / "requirements.txt")
        mlflow_from = build_bench._from_image(
            build_bench._mlflow_dockerfile(venv, model, work / "mlflow-dockerfile")
        )
        mlflow_base = images.mlflow_base(docker, KILN_BASE)
        snapshot, commit = build_bench._snapshot_kiln(work / "snapshot", opts.kiln_source)
        archive = work / "base.tar"
        docker.run("save", "--output", str(archive), KILN_BASE, timeout=600)
        loads = [build_bench._load()]
        runs: list[Timed] = []
        with started_registry(work / "registry") as registry:
            bench = Bench(work, docker, snapshot, archive, registry.host, opts, venv)
            tools = TOOLS + (tuple(PLATFORM_TOOLS) if _two_platform(opts, bench, docker, model) else ())
            for repeat in range(opts.cold):
                for tool in tools if repeat % 2 == 0 else tools[::-1]:
                    if tool == "mlflow":
                        images.point_stand_in(docker, mlflow_from, mlflow_base)
                    runs.append(bench.build(tool, model, "cold", repeat))
                    loads.append(build_bench._load())
                    print(
                        f"bench: cold {repeat + 1} {tool:7} {runs[-1].seconds:6.1f} s  load {loads[-1]:.2f}",
                        flush=True,
                    )
            mark = registry.mark()
            first_push = bench.build("oci-push", model, "first-push", 0)
            first_push = dataclasses.replace(first_push, registry_uploads=len(registry.blob_uploads(mark)))
            print(
                f"bench: first push {first_push.seconds:.1f} s, {first_push.bytes_uploaded} bytes", flush=True
            )
            for repeat in range(opts.rebuilds):
                build_bench._retrain(model, c=0.01 * 3**repeat, scratch=work / "retrained")
                if bench.trimmed is not None:
                    shutil.copy2(model / "model.skops", bench.trimmed / "model.skops")
                for tool in tools if repeat % 2 == 0 else tools[::-1]:
                    runs.append(bench.build(tool, model, "rebuild", repeat))
                    loads.append(build_bench._load())
                    print(
                        f"bench: rebuild {repeat + 1} {tool:7} {runs[-1].seconds:6.1f} s "
                        f"{runs[-1].layers_reused}",
                        flush=True,
                    )
                build_bench._retrain(model, c=0.02 * 3**repeat, scratch=work / "retrained")
                mark = registry.mark()
                pushed = bench.build("oci-push", model, "rebuild", repeat)
                runs.append(dataclasses.replace(pushed, registry_uploads=len(registry.blob_uploads(mark))))
                uploads = runs[-1].registry_uploads
                print(
                    f"bench: rebuild+push {repeat + 1} {pushed.seconds:6.1f} s, "
                    f"{pushed.bytes_uploaded} bytes, {uploads} blobs in the registry's log",
                    flush=True,
                )
                for old in [r for r in docker.images if f"-rebuild{repeat - 1}" in r]:
                    docker.run("image", "rm", old, check=False)
        load = (
            f"{loads[0]:.2f} before, {loads[-1]:.2f} after, {min(loads):.2f}-{max(loads):.2f} during (1 min)"
        )
        section = _section(runs, load, commit, build_bench._machine(docker), first_push)
        print(section)
        raw = REPO / ".cache" / "bench" / f"oci_bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps({"runs": [dataclasses.asdict(r) for r in runs], "loads": loads}, indent=1))
        print(f"bench: every run's numbers in {raw}; took {(time.monotonic() - began) / 60:.1f} min")
        if not opts.no_write:
            report.write_section(opts.output, SECTION, section)
    finally:
        build_bench.clean_up(docker, mlflow_from, work, keep=opts.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
