"""Image-build benchmark: ``kiln build`` against ``mlflow models build-docker`` on the same model.

Both build the ``sklearn_iris`` test fixture, side by side in one run, and the script
measures: cold build time, rebuild time after a model-only change (new weights, same
requirements), image size, and the time from ``docker run`` to the first 200 on ``/ping``.
Medians, the kiln/MLflow ratios and the setup go into a section of docs/benchmarks.md.

    .venv/bin/python bench/build_bench.py                  # the full run (about 10 minutes)
    .venv/bin/python bench/build_bench.py --cold 1 --rebuilds 1 --starts 2 --no-write

No registry is needed: MLflow's build is given a local stand-in for the ``python:X.Y-slim``
it asks for (``kiln-test/python:3.11-slim`` + pip + this host's CA bundle), tagged only while
the benchmark runs and only if no real image has that name. kiln builds on
``kiln-test/python:3.11-slim`` itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import builds, images, report, servers

REPO = Path(__file__).resolve().parents[1]
SECTION = "build_bench"
SCENARIO = "sklearn_iris"
KILN_BASE = "kiln-test/python:3.11-slim"
MB = 1_000_000
MLFLOW_FIRST_STEP = "99-mlflow-timeouts"
"""In the first step of MLflow's generated Dockerfile (and in no other Dockerfile here)."""


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cold", type=int, default=2, help="cold builds per tool (default 2)")
    parser.add_argument("--rebuilds", type=int, default=3, help="model-only rebuilds per tool (default 3)")
    parser.add_argument("--starts", type=int, default=5, help="timed container starts per image (default 5)")
    parser.add_argument("--base-image", default=KILN_BASE, help=f"kiln's base image (default {KILN_BASE})")
    parser.add_argument(
        "--kiln-source", choices=("head", "worktree"), default="head",
        help="run kiln from git HEAD's src/kiln (default) or from the work tree as it is now",
    )  # fmt: skip
    parser.add_argument(
        "--host-pip-config", action="store_true",
        help="let kiln's host-side pip/uv use this host's pip.conf (local wheel mirrors); "
        "by default both tools fetch from PyPI only",
    )  # fmt: skip
    parser.add_argument("--mlflow-venv", type=Path, default=REPO / ".cache" / "bench" / "mlflow-venv")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/ alone")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (model, logs, caches)")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Start:
    tool: str
    repeat: int
    seconds: float


def _load() -> float:
    return os.getloadavg()[0]


def _save_model(dest: Path) -> Path:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"file://{dest.parent / 'mlruns'}")
    from tests.fixtures import models

    return models.save(SCENARIO, dest)


def _retrain(model: Path, c: float, scratch: Path) -> None:
    """Overwrite only the weights file with a LogisticRegression trained with another ``C``."""
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris(as_frame=True)
    retrained = LogisticRegression(C=c, max_iter=500).fit(iris.data, iris.target)
    shutil.rmtree(scratch, ignore_errors=True)
    mlflow.sklearn.save_model(retrained, str(scratch))
    weights = model / "model.skops"
    before = weights.read_bytes()
    shutil.copyfile(scratch / "model.skops", weights)
    if weights.read_bytes() == before:
        raise SystemExit(f"bench: retraining with C={c} left {weights} unchanged")


def _snapshot_kiln(dest: Path, source: str) -> tuple[Path, str]:
    """A frozen copy of the ``kiln`` package to run (the tree may change while we measure), and its commit."""
    dest.mkdir(parents=True)
    commit = _git("rev-parse", "--short", "HEAD")
    if source == "head":
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "src/kiln"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    else:
        shutil.copytree(
            REPO / "src" / "kiln", dest / "src" / "kiln", ignore=shutil.ignore_patterns("__pycache__")
        )
    root = dest / "src"
    found = subprocess.run(
        [sys.executable, "-c", "import kiln; print(kiln.__file__)"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(root)},
    ).stdout.strip()  # fmt: skip
    if not found.startswith(str(root)):
        raise SystemExit(f"bench: PYTHONPATH={root} still imports kiln from {found}")
    return root, commit if source == "head" else f"{commit} + the work tree's changes"


def _mlflow_dockerfile(venv: Path, model: Path, out: Path) -> str:
    """The Dockerfile ``mlflow models build-docker`` builds for this model (its own generator)."""
    subprocess.run(
        [str(venv / "bin" / "mlflow"), "models", "generate-dockerfile", "-m", str(model),
         "--env-manager", "local", "-d", str(out)],
        capture_output=True, check=True, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )  # fmt: skip
    return (out / "Dockerfile").read_text()


def _instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments and blanks dropped."""
    joined = dockerfile.replace("\\\n", " ")
    return [
        " ".join(line.split())
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _from_image(dockerfile: str) -> str:
    return next(line.split()[1] for line in _instructions(dockerfile) if line.upper().startswith("FROM "))


def _ensure_kiln_base(docker: images.Docker, base: str) -> None:
    if docker.inspect(base) is None:
        if base != KILN_BASE:
            raise SystemExit(f"bench: base image {base} not found")
        subprocess.run([str(REPO / "scripts" / "make-base-image.sh"), base], check=True)


def _check_cold(build: builds.Build) -> None:
    if build.steps.cached:
        raise SystemExit(
            f"bench: the cold {build.tool} build reused cached steps {list(build.steps.cached)} "
            f"(log {build.log})"
        )


def _check_same_answers(
    docker: images.Docker, kiln_image: str, mlflow_image: str, body: bytes, run_id: str
) -> str:
    """Both images must answer the example with 200 and identical predictions; returns them."""
    answers = {}
    for tool, image in (("kiln", kiln_image), ("mlflow", mlflow_image)):
        started = images.start(docker, image, f"kiln-bench-{run_id}-check-{tool}", servers.free_port())
        try:
            answers[tool] = servers.post(f"{started.base_url}/invocations", body)[:2]
        finally:
            docker.remove_container(started.container)
    if answers["kiln"][0] != 200 or answers["kiln"] != answers["mlflow"]:
        raise SystemExit(
            f"bench: the images disagree: kiln {answers['kiln']!r}, MLflow {answers['mlflow']!r}"
        )
    print(f"bench: both images answer 200 {json.dumps(answers['kiln'][1])}", flush=True)
    return json.dumps(answers["kiln"][1])


def _starts(
    docker: images.Docker, kiln_image: str, mlflow_image: str, repeats: int, run_id: str
) -> list[Start]:
    done: list[Start] = []
    for repeat in range(repeats):
        order = [("kiln", kiln_image), ("mlflow", mlflow_image)]
        for tool, image in order if repeat % 2 == 0 else order[::-1]:
            started = images.start(
                docker, image, f"kiln-bench-{run_id}-start-{tool}-{repeat}", servers.free_port()
            )
            docker.remove_container(started.container)
            done.append(Start(tool, repeat, started.seconds))
            print(
                f"bench: start {repeat + 1} {tool:6} {started.seconds:6.2f} s to the first 200 on /ping",
                flush=True,
            )
    return done


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio(kiln: float, mlflow: float) -> str:
    return f"{kiln / mlflow:.2f}" if mlflow else "n/a"


def _steps(names: Sequence[str], width: int = 70) -> str:
    short = (n if len(n) <= width else n[: width - 3] + "..." for n in names)
    return "; ".join(f"`{n}`" for n in short) or "none"


def _layers(layers: Sequence[tuple[int, str]]) -> str:
    big = sorted((layer for layer in layers if layer[0] >= MB), reverse=True)
    return (
        ", ".join(f"{size / MB:.0f} MB {_steps([_created_by(created)], 50)}" for size, created in big)
        or "none"
    )


def _created_by(created: str) -> str:
    """A history entry as a Dockerfile instruction (without the builders' ``/bin/sh -c`` wrapping)."""
    created = created.removesuffix("# buildkit").strip()
    if created.startswith("/bin/sh -c #(nop) "):
        return created[len("/bin/sh -c #(nop) ") :].strip()
    if created.startswith("/bin/sh -c "):
        return "RUN " + created[len("/bin/sh -c ") :].strip()
    return created.replace("RUN /bin/sh -c ", "RUN ", 1)


def _runs(values: Sequence[float], unit: str = "s") -> str:
    return ", ".join(f"{v:.1f}" for v in values) + f" {unit}"


@dataclass(frozen=True)
class Context:
    """What the section says about the setup."""

    load: str
    mlflow_from: str
    mlflow_instructions: tuple[str, ...]
    docker_binary: str
    buildkit: bool
    kiln_commit: str
    mlflow_venv: str
    machine: str


@dataclass(frozen=True)
class Results:
    cold: list[builds.Build]
    rebuilds: list[builds.Build]
    starts: list[Start]
    sizes: dict[str, int]
    base_sizes: dict[str, int]
    layers: dict[str, list[tuple[int, str]]]
    """Each image's layers above its base: (bytes, created by), newest first."""
    predictions: str

    def seconds(self, runs: Sequence[builds.Build], tool: str) -> list[float]:
        return [b.seconds for b in runs if b.tool == tool]

    def start_seconds(self, tool: str) -> list[float]:
        return [s.seconds for s in self.starts if s.tool == tool]


def _table(r: Results) -> str:
    cold_k, cold_m = _median(r.seconds(r.cold, "kiln")), _median(r.seconds(r.cold, "mlflow"))
    re_k, re_m = _median(r.seconds(r.rebuilds, "kiln")), _median(r.seconds(r.rebuilds, "mlflow"))
    size_k, size_m = r.sizes["kiln"], r.sizes["mlflow"]
    added_k, added_m = size_k - r.base_sizes["kiln"], size_m - r.base_sizes["mlflow"]
    start_k, start_m = _median(r.start_seconds("kiln")), _median(r.start_seconds("mlflow"))
    n_cold, n_re, n_start = (
        len(r.seconds(r.cold, "kiln")),
        len(r.seconds(r.rebuilds, "kiln")),
        len(r.start_seconds("kiln")),
    )

    def yes(ok: bool) -> str:
        return "**yes**" if ok else "**no**"

    rows = [
        "| | kiln | MLflow | kiln/MLflow | target | met |",
        "|---|---:|---:|---:|---|:---:|",
        f"| cold build, s (median of {n_cold}) | {cold_k:.1f} | {cold_m:.1f} | {_ratio(cold_k, cold_m)} "
        f"| faster than MLflow (< 1) | {yes(cold_k < cold_m)} |",
        f"| rebuild after a model-only change, s (median of {n_re}) | {re_k:.1f} | {re_m:.1f} "
        f"| {_ratio(re_k, re_m)} "
        f"| < 10 s and < 0.20 | {yes(re_k < 10 and re_k < re_m / 5)} |",
        f"| image size, MB | {size_k / MB:.0f} | {size_m / MB:.0f} | {_ratio(size_k, size_m)} | <= 0.50 "
        f"| {yes(size_k <= size_m / 2)} |",
        f"| of which above its base image, MB | {added_k / MB:.0f} | {added_m / MB:.0f} "
        f"| {_ratio(added_k, added_m)} | | |",
        f"| `docker run` to the first 200 on `/ping`, s (median of {n_start}) | {start_k:.2f} "
        f"| {start_m:.2f} | {_ratio(start_k, start_m)} | | |",
    ]
    return "\n".join(rows)


def _section(opts: argparse.Namespace, r: Results, ctx: Context) -> str:
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/build_bench.py", *sys.argv[1:]])
    kiln_cold = next(b for b in reversed(r.cold) if b.tool == "kiln")
    mlflow_cold = next(b for b in reversed(r.cold) if b.tool == "mlflow")
    kiln_rebuilt = sorted({s for b in r.rebuilds if b.tool == "kiln" for s in b.steps.run})
    mlflow_rebuilt = sorted({s for b in r.rebuilds if b.tool == "mlflow" for s in b.steps.run})
    sources = (
        "this host's pip configuration (including its local wheel mirrors)"
        if opts.host_pip_config
        else "PyPI only (through the same proxy as MLflow's; the host's pip.conf local wheel mirrors "
        "switched off with `PIP_CONFIG_FILE=/dev/null`)"
    )
    mlflow_dockerfile = "\n".join(ctx.mlflow_instructions)
    kiln_steps = "\n".join(n if len(n) <= 100 else n[:97] + "..." for n in kiln_cold.steps.run)
    return f"""
## Image builds: `kiln build` vs `mlflow models build-docker`

Re-run (needs Docker, `kiln-test/python:3.11-slim` or debootstrap to make it, PyPI and a Debian mirror):

```bash
.venv/bin/python bench/build_bench.py            # about 10 minutes; rewrites this section
.venv/bin/python bench/build_bench.py --help     # run counts, kiln's base image, --no-write, --keep
```

It keeps `.cache/bench/mlflow-venv` and the MLflow base stand-in (`kiln-bench/mlflow-base:*`) for the
next run; it removes every container and image it made and the BuildKit cache of MLflow's builds
(never reusable: each starts from a one-off base). kiln's cold builds leave their BuildKit cache, as
any kiln build does (`docker builder prune` reclaims it). Each run's numbers also go to
`.cache/bench/build_bench-*.json`.

Measured {dt.date.today().isoformat()} by `bench/build_bench.py`, both tools side by side in one run
(cold builds alternating kiln/MLflow, then the container starts, then the rebuilds). The machine was
shared with other work, load average {ctx.load}: absolute times are noisy, and both tools ran under
the same conditions.

{_table(r)}

Each run: cold kiln {_runs(r.seconds(r.cold, "kiln"))}, cold MLflow {_runs(r.seconds(r.cold, "mlflow"))};
rebuild kiln {_runs(r.seconds(r.rebuilds, "kiln"))}, rebuild MLflow {_runs(r.seconds(r.rebuilds, "mlflow"))};
start kiln {_runs(r.start_seconds("kiln"))}, start MLflow {_runs(r.start_seconds("mlflow"))}.

Image sizes are `docker image inspect --format '{{{{.Size}}}}'` (uncompressed, base included); the
bases are {r.base_sizes["kiln"] / MB:.0f} MB (kiln's) and {r.base_sizes["mlflow"] / MB:.0f} MB (MLflow's).
Layers of 1 MB or more above the base:
kiln {_layers(r.layers["kiln"])};
MLflow {_layers(r.layers["mlflow"])}.

Before measuring, both images answered the model's `serving_input_example.json` on `/invocations`
with 200 and the same predictions: `{r.predictions}`.

**What is measured.** Wall-clock time of the whole command, as a user runs it: the host-side work
(kiln: reading the model, probing the base, resolving the lock with uv, fetching wheels, building its
own wheel, writing the context; MLflow: copying the model, writing its Dockerfile), the `docker build`,
and writing the image into the engine's image store.

- **Cold**: kiln with a fresh `KILN_CACHE_DIR`, `UV_CACHE_DIR` and `PIP_CACHE_DIR` (lock resolved,
  every wheel downloaded), `--no-cache`, and BuildKit's cache mounts (apt's) pruned first
  (`docker builder prune --filter type=exec.cachemount`). `mlflow models build-docker` has no
  `--no-cache`; its base is re-tagged before every cold build to a new image (the stand-in plus a
  one-off 33-byte file: new layer contents, since BuildKit keys a base by its layers, not its labels),
  so no step can come from the layer cache; its `pip install`s run inside the build with no pip cache
  anyway. The build logs were checked: no step but `FROM` was cached in any cold build. Not included:
  the base images (present locally for both, nothing pulled), installing kiln and MLflow on the host.
  Package sources: MLflow's in-image pip and kiln's host-side pip/uv both fetch from {sources}.
- **Rebuild after a model-only change**: `model.skops` overwritten with a LogisticRegression trained
  with another `C` (a new one for each rebuild; `MLmodel`, requirements and environment unchanged),
  then the same build command again without `--no-cache`, kiln with the caches of its last cold build.
  Steps the rebuilds ran (all others cached): kiln {_steps(kiln_rebuilt)}; MLflow {_steps(mlflow_rebuilt)}.
- **Start**: `docker run -d -p 127.0.0.1:PORT:8080 IMAGE` until `GET /ping` answers 200 (polled
  every 50 ms), each image with its defaults (workers = CPUs for both), the container removed after
  each start.

**Base images.** No registry is reachable here, so neither build pulls anything. kiln builds with
`--base-image {opts.base_image}` (Debian bookworm + Debian's python3 3.11, made by
`scripts/make-base-image.sh`). MLflow's `build-docker` has no base-image option and asks for
`{ctx.mlflow_from}` (the Python version in the model's `python_env.yaml`); the benchmark tags a
stand-in under that name for the duration of the run (only if no real image has that name; removed
afterwards), made from the same `{opts.base_image}` plus what MLflow's Dockerfile needs from a real
`python:3.11-slim`: Debian's `python3-pip` (pip, setuptools, wheel), no `EXTERNALLY-MANAGED` marker,
and this host's CA bundle (`/etc/ssl/certs/ca-certificates.crt`, with `PIP_CERT` and
`REQUESTS_CA_BUNDLE`) so that its in-image `pip install` reaches PyPI through the TLS-intercepting
proxy. The two bases differ only by that pip and CA bundle (and the nonce file). MLflow's default
`virtualenv` env manager (`ubuntu:24.04`, pyenv and Python fetched from GitHub) cannot work without
GitHub; `--env-manager local` on a slim Python base is MLflow's leanest path, and the one measured.

**Builders.** kiln: {kiln_cold.steps.builder} (`{ctx.docker_binary}`, chosen by kiln's own detection
and pinned with `KILN_DOCKER`/`KILN_BUILDKIT` for every build). MLflow: {mlflow_cold.steps.builder}
(the same client first on `PATH`, `DOCKER_BUILDKIT={"1" if ctx.buildkit else "0"}`; builder read from
its build log). MLflow itself runs `docker build -t NAME -f Dockerfile --platform linux/amd64 .`.

MLflow's generated Dockerfile (`mlflow models generate-dockerfile -m MODEL --env-manager local`),
instructions only:

```dockerfile
{mlflow_dockerfile}
```

kiln's Dockerfile steps in its cold build (FROM lines left out; the Dockerfile is described in
[building.md](building.md)):

```
{kiln_steps}
```

Commands (`MODEL` the saved fixture, `NAME` a fresh tag per build):

```bash
# kiln, run from a frozen copy of src/kiln at git {ctx.kiln_commit}; cold adds --no-cache and fresh caches
python -m kiln build -m MODEL -n NAME --base-image {opts.base_image} [--no-cache]
# MLflow {servers.MLFLOW_VERSION}, from its own venv ({ctx.mlflow_venv})
mlflow models build-docker -m MODEL -n NAME --env-manager local
```

Machine: {ctx.machine}

Command: `{command}`
"""


def _machine(docker: images.Docker) -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )  # fmt: skip
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}, {cpu}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Linux {platform.release()}, "
        f"Python {platform.python_version()}; docker {docker.versions()}."
    )


def _measure(
    opts: argparse.Namespace,
    work: Path,
    docker: images.Docker,
    model: Path,
    venv: Path,
    run_id: str,
    mlflow_from: str,
    snapshot: Path,
) -> tuple[Results, list[float]]:
    logs = work / "logs"
    logs.mkdir()
    mlflow_base = images.mlflow_base(docker, opts.base_image)
    kiln = builds.KilnBuilder(sys.executable, snapshot, opts.base_image, docker, opts.host_pip_config)
    mlflow = builds.MlflowBuilder(venv, builds.make_shim(work / "shim", docker.binary), docker)
    body = json.dumps(json.loads((model / "serving_input_example.json").read_text())).encode()

    loads = [_load()]
    cold: list[builds.Build] = []
    caches = work / "caches"
    for repeat in range(opts.cold):
        for tool in ("kiln", "mlflow") if repeat % 2 == 0 else ("mlflow", "kiln"):
            image = f"kiln-bench/iris:{run_id}-{tool}-cold{repeat}"
            log = logs / f"{tool}-cold{repeat}.log"
            if tool == "kiln":
                caches = work / f"caches-{repeat}"
                build = kiln.build(model, image, caches, log, kind="cold", repeat=repeat)
            else:
                images.point_stand_in(docker, mlflow_from, mlflow_base)
                build = mlflow.build(model, image, log, kind="cold", repeat=repeat)
            _check_cold(build)
            cold.append(build)
            loads.append(_load())
            print(f"bench: cold {repeat + 1} {tool:6} {build.seconds:7.1f} s ({build.steps.builder}, "
                  f"{len(build.steps.run)} steps run)  load {loads[-1]:.2f}", flush=True)  # fmt: skip
    kiln_image = next(b.image for b in reversed(cold) if b.tool == "kiln")
    mlflow_image = next(b.image for b in reversed(cold) if b.tool == "mlflow")
    sizes = {"kiln": docker.size(kiln_image), "mlflow": docker.size(mlflow_image)}
    base_sizes = {"kiln": docker.size(opts.base_image), "mlflow": docker.size(mlflow_from)}
    layers = {
        "kiln": docker.layers_above(kiln_image, opts.base_image),
        "mlflow": docker.layers_above(mlflow_image, mlflow_from),
    }
    print(
        f"bench: image sizes kiln {sizes['kiln'] / MB:.0f} MB, MLflow {sizes['mlflow'] / MB:.0f} MB",
        flush=True,
    )

    predictions = _check_same_answers(docker, kiln_image, mlflow_image, body, run_id)
    starts = _starts(docker, kiln_image, mlflow_image, opts.starts, run_id)
    loads.append(_load())

    rebuilds: list[builds.Build] = []
    for repeat in range(opts.rebuilds):
        _retrain(model, c=0.01 * 3**repeat, scratch=work / "retrained")  # the fixture's C is 1.0
        for tool in ("kiln", "mlflow") if repeat % 2 == 0 else ("mlflow", "kiln"):
            image = f"kiln-bench/iris:{run_id}-{tool}-rebuild{repeat}"
            log = logs / f"{tool}-rebuild{repeat}.log"
            if tool == "kiln":
                build = kiln.build(model, image, caches, log, kind="rebuild", repeat=repeat)
            else:
                build = mlflow.build(model, image, log, kind="rebuild", repeat=repeat)
            rebuilds.append(build)
            loads.append(_load())
            print(f"bench: rebuild {repeat + 1} {tool:6} {build.seconds:6.1f} s, "
                  f"ran {list(build.steps.run)}  load {loads[-1]:.2f}", flush=True)  # fmt: skip
            # Keep only the newest images of each tool: they are large.
            previous = [b.image for b in rebuilds[:-1] if b.tool == tool]
            for old in previous[-1:]:
                docker.run("image", "rm", old, check=False)

    return Results(cold, rebuilds, starts, sizes, base_sizes, layers, predictions), loads


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
    ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    from kiln.backends.docker.cli import find_docker

    cli = find_docker()  # kiln's own choice of client and builder; MLflow gets the same
    docker = images.Docker(cli.binary, cli.buildkit)
    _ensure_kiln_base(docker, opts.base_image)
    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="kiln-build-bench-"))
    mlflow_from = ""
    began = time.monotonic()
    try:
        model = _save_model(work / "model")
        venv = servers.ensure_mlflow_venv(opts.mlflow_venv, model / "requirements.txt")
        dockerfile = _mlflow_dockerfile(venv, model, work / "mlflow-dockerfile")
        mlflow_from = _from_image(dockerfile)
        snapshot, kiln_commit = _snapshot_kiln(work / "snapshot", opts.kiln_source)
        results, loads = _measure(opts, work, docker, model, venv, run_id, mlflow_from, snapshot)
        ctx = Context(
            load=f"{loads[0]:.2f} before, {loads[-1]:.2f} after, "
            f"{min(loads):.2f}-{max(loads):.2f} during (1 min)",
            mlflow_from=mlflow_from,
            mlflow_instructions=tuple(_instructions(dockerfile)),
            docker_binary=docker.binary,
            buildkit=docker.buildkit,
            kiln_commit=kiln_commit,
            mlflow_venv=os.path.relpath(venv, REPO),
            machine=_machine(docker),
        )
        section = _section(opts, results, ctx)
        print(section)
        raw = REPO / ".cache" / "bench" / f"build_bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(
            json.dumps({"results": asdict(results), "context": asdict(ctx), "loads": loads}, indent=1)
        )
        print(f"bench: every run's numbers in {raw}; took {(time.monotonic() - began) / 60:.1f} min")
        if not opts.no_write:
            report.write_section(opts.output, SECTION, section)
    finally:
        clean_up(docker, mlflow_from, work, keep=opts.keep)
    return 0


def clean_up(docker: images.Docker, mlflow_from: str, work: Path, *, keep: bool) -> None:
    """Remove what a run made: the stand-in tag, images, MLflow's build cache, the work dir."""
    if mlflow_from:  # our stand-in tag goes first, then the images it pointed at
        images.untag_stand_in(docker, mlflow_from)
    docker.cleanup()
    # MLflow's cold builds start from one-off bases: their BuildKit cache is never reused.
    pruned = docker.prune_build_cache_below(MLFLOW_FIRST_STEP)
    print(f"bench: removed {pruned} build cache records of MLflow's builds", flush=True)
    if keep:
        print(f"bench: work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
