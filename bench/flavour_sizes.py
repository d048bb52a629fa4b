"""Image size per flavour: ``kiln build`` and ``mlflow models build-docker`` of the flavour matrix's models.

Each model of the flavour matrix (tests/fixtures/models/flavours.py) is saved by MLflow, built by
kiln on ``kiln-test/python:3.11-slim`` and, where MLflow can build it here, by ``mlflow models
build-docker --env-manager local`` on the same stand-in for ``python:3.11-slim`` that
bench/build_bench.py uses (the test base + pip + this host's CA bundle). Both images answer the
model's ``serving_input_example.json`` before their sizes count. The table goes into a section
of docs/benchmarks.md.

    .venv/bin/python bench/flavour_sizes.py                        # every flavour, both tools
    .venv/bin/python bench/flavour_sizes.py --flavour xgboost_classifier --no-mlflow --no-write

kiln uses this host's pip configuration (its local wheel mirrors, which hold PyTorch's CPU
build); MLflow's in-image ``pip install`` reaches PyPI only. The sdist-only model's package is
served from a PEP 503 index on the host's loopback, which MLflow's in-image pip cannot reach.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import builds, images, report, servers

REPO = Path(__file__).resolve().parents[1]
SECTION = "flavour_sizes"
KILN_BASE = "kiln-test/python:3.11-slim"
MB = 1_000_000
ISSUE_XGBOOST_MB = 1283
"""The xgboost CPU image kiln built before it chose xgboost-cpu (issue 13)."""
NO_MLFLOW = {
    "sdist_requirement": "its package is on an index on the host's loopback, out of the build's reach"
}


@dataclass(frozen=True)
class Row:
    flavour: str
    kiln_mb: float | None
    kiln_seconds: float | None
    kiln_cuda: tuple[str, ...]
    mlflow_mb: float | None
    mlflow_seconds: float | None
    mlflow_cuda: tuple[str, ...]
    same_answer: bool | None
    note: str


def _options(argv: list[str] | None) -> argparse.Namespace:
    from tests.fixtures.models.flavours import FLAVOURS

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--flavour", action="append", choices=sorted(FLAVOURS), help="repeatable; default all"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="build with kiln only")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/ alone")
    opts = parser.parse_args(argv)
    opts.flavour = opts.flavour or list(FLAVOURS)
    return opts


def _pip_packages(docker: images.Docker, image: str, python: str) -> list[str]:
    """``name==version`` of every distribution installed in the image (run with ``python``)."""
    listing = docker.run(
        "run", "--rm", "--entrypoint", python, image, "-c",
        "import importlib.metadata as m; print('\\n'.join(sorted(f\"{d.metadata['Name']}=={d.version}\" "
        "for d in m.distributions())))",
        timeout=300,
    )  # fmt: skip
    return listing.splitlines()


def _cuda(packages: list[str]) -> tuple[str, ...]:
    names = sorted({p.split("==")[0].lower() for p in packages})
    return tuple(n for n in names if n.startswith("nvidia-") or n == "triton")


def _answer(docker: images.Docker, image: str, body: bytes, name: str) -> object:
    started = images.start(docker, image, name, servers.free_port(), timeout=300)
    try:
        status, answer, _text = servers.post(f"{started.base_url}/invocations", body)
    finally:
        docker.remove_container(started.container)
    if status != 200:
        raise SystemExit(f"bench: {image} answered {status}: {answer!r}")
    return answer


def _kiln(docker: images.Docker, model: Path, tag: str, env: dict[str, str], log: Path) -> float:
    cmd = [sys.executable, "-m", "kiln", "build", "-m", str(model), "-n", tag, "--base-image", KILN_BASE]
    docker.images.append(tag)
    began = time.monotonic()
    with log.open("wb") as out:
        done = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"kiln build failed ({done.returncode}); log {log}")
    return time.monotonic() - began


def _measure(
    flavour: str, model: Path, docker: images.Docker, mlflow: builds.MlflowBuilder | None,
    mlflow_base: str, work: Path, run_id: str, env: dict[str, str],
) -> Row:  # fmt: skip
    body = json.dumps(json.loads((model / "serving_input_example.json").read_text())).encode()
    kiln_tag = f"kiln-bench/flavour-{flavour.replace('_', '-')}:{run_id}-kiln"
    notes: list[str] = []
    try:
        kiln_seconds = _kiln(docker, model, kiln_tag, env, work / f"{flavour}-kiln.log")
    except RuntimeError as exc:
        tail = (work / f"{flavour}-kiln.log").read_text(errors="replace").strip().splitlines()[-1:]
        return Row(flavour, None, None, (), None, None, (), None, f"kiln: {exc}: {' '.join(tail)}")
    kiln_size = docker.size(kiln_tag) / MB
    kiln_cuda = _cuda(_pip_packages(docker, kiln_tag, "/opt/kiln/venv/bin/python"))
    print(f"bench: {flavour} kiln {kiln_size:.0f} MB in {kiln_seconds:.0f} s", flush=True)
    try:
        kiln_answer = _answer(docker, kiln_tag, body, f"kiln-bench-{run_id}-{flavour}-kiln")
    except (SystemExit, images.DockerError) as exc:
        kiln_answer = None
        notes.append(f"kiln's image did not answer: {str(exc).splitlines()[-1][:200]}")
    mlflow_size = mlflow_seconds = None
    mlflow_cuda: tuple[str, ...] = ()
    same = None
    if mlflow is None:
        notes.append("MLflow not built (--no-mlflow)")
    elif flavour in NO_MLFLOW:
        notes.append(f"MLflow cannot build it here: {NO_MLFLOW[flavour]}")
    else:
        mlflow_tag = f"kiln-bench/flavour-{flavour.replace('_', '-')}:{run_id}-mlflow"
        images.point_stand_in(docker, mlflow_from(model), mlflow_base)
        try:
            build = mlflow.build(model, mlflow_tag, work / f"{flavour}-mlflow.log", kind="cold", repeat=0)
            mlflow_seconds = build.seconds
            mlflow_size = docker.size(mlflow_tag) / MB
            mlflow_cuda = _cuda(_pip_packages(docker, mlflow_tag, "python3"))
            print(f"bench: {flavour} MLflow {mlflow_size:.0f} MB in {mlflow_seconds:.0f} s", flush=True)
            mlflow_answer = _answer(docker, mlflow_tag, body, f"kiln-bench-{run_id}-{flavour}-mlflow")
            same = kiln_answer is not None and kiln_answer == mlflow_answer
        except (RuntimeError, SystemExit, images.DockerError) as exc:
            notes.append(f"MLflow: {str(exc).strip().splitlines()[-1][:200]}")
        docker.run("image", "rm", mlflow_tag, check=False)
    docker.run("image", "rm", kiln_tag, check=False)
    return Row(
        flavour, kiln_size, kiln_seconds, kiln_cuda, mlflow_size, mlflow_seconds, mlflow_cuda, same,
        "; ".join(notes),
    )  # fmt: skip


def mlflow_from(model: Path) -> str:
    """The base MLflow's Dockerfile asks for: ``python:X.Y.Z-slim``, the model's python_env.yaml version."""
    import yaml

    python = yaml.safe_load((model / "python_env.yaml").read_text())["python"]
    return f"python:{python}-slim"


def _mb(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "n/a"


def _seconds(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "n/a"


def _table(rows: list[Row]) -> str:
    lines = [
        "| flavour | kiln image, MB | MLflow image, MB | kiln/MLflow | CUDA packages (kiln / MLflow) "
        "| kiln build, s | MLflow build, s | same answer | note |",
        "|---|---:|---:|---:|---|---:|---:|:---:|---|",
    ]
    for r in rows:
        ratio = f"{r.kiln_mb / r.mlflow_mb:.2f}" if r.kiln_mb and r.mlflow_mb else "n/a"
        cuda = f"{len(r.kiln_cuda) or 'none'} / " + (
            f"{len(r.mlflow_cuda) or 'none'}" if r.mlflow_mb is not None else "n/a"
        )
        same = {True: "yes", False: "**no**", None: "n/a"}[r.same_answer]
        lines.append(
            f"| {r.flavour} | {_mb(r.kiln_mb)} | {_mb(r.mlflow_mb)} | {ratio} | {cuda} "
            f"| {_seconds(r.kiln_seconds)} | {_seconds(r.mlflow_seconds)} | {same} | {r.note} |"
        )
    return "\n".join(lines)


def _section(rows: list[Row], base_mb: float, stand_in_mb: float, load: str, commit: str) -> str:
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/flavour_sizes.py", *sys.argv[1:]])
    xgboost = next((r for r in rows if r.flavour == "xgboost_classifier" and r.kiln_mb), None)
    verdict = (
        f"**xgboost CPU image: {xgboost.kiln_mb:,.0f} MB**, against {ISSUE_XGBOOST_MB:,} MB in issue 13 "
        f"(target: at most half, {ISSUE_XGBOOST_MB / 2:,.0f} MB: "
        f"{'met' if xgboost.kiln_mb <= ISSUE_XGBOOST_MB / 2 else 'not met'}); its lock has "
        f"`xgboost-cpu` and {'no CUDA package' if not xgboost.kiln_cuda else ', '.join(xgboost.kiln_cuda)}."
        if xgboost
        else "xgboost was not measured in this run."
    )
    cuda = {r.flavour: r.mlflow_cuda for r in rows if r.mlflow_cuda}
    mlflow_cuda = "; ".join(f"{f}: {', '.join(c)}" for f, c in cuda.items()) or "none"
    return f"""
## Image size per flavour: `kiln build` vs `mlflow models build-docker`

Re-run (needs Docker, PyPI, a Debian mirror; about 20 minutes, most of it MLflow's in-image
`pip install`s, PyTorch's CUDA wheels above all):

```bash
.venv/bin/python bench/flavour_sizes.py            # rewrites this section
.venv/bin/python bench/flavour_sizes.py --flavour xgboost_classifier --no-mlflow --no-write
```

Measured {dt.date.today().isoformat()} by `bench/flavour_sizes.py` at git {commit}, load average
{load}. Each model is the flavour matrix's fixture (`tests/fixtures/models/flavours.py`, saved by
MLflow {servers.MLFLOW_VERSION}), built once by each tool with its caches as they were (sizes do
not depend on them; build times do, and are shown only as a rough guide).

{verdict}

{_table(rows)}

Sizes are `docker image inspect --format '{{{{.Size}}}}'` (uncompressed, base included). kiln's base
is `{KILN_BASE}` ({base_mb:,.0f} MB); MLflow's is the stand-in for `python:X.Y.Z-slim` that
bench/build_bench.py makes ({stand_in_mb:,.0f} MB: the same base + Debian's python3-pip + this
host's CA bundle). "CUDA packages": installed distributions named `nvidia-*` or `triton`
(kiln: in /opt/kiln/venv; MLflow: in the image's Python); MLflow's: {mlflow_cuda}. "same answer":
both images answered the model's `serving_input_example.json` with 200 and equal JSON.

kiln ran with this host's pip configuration, whose find-links hold PyTorch's CPU build
(`torch==2.13.0+cpu`): kiln asks for `torch==X+cpu` on CPU images and `xgboost-cpu` for
`xgboost`. MLflow's `build-docker --env-manager local` runs `pip install` of the model's
requirements inside the image, from PyPI: `torch==2.13.0` there is the CUDA build.

Command: `{command}`
"""


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from tests.env.conftest import PackageIndex
    from tests.fixtures import models
    from tests.fixtures.models import flavours

    from kiln.backends.docker.cli import find_docker

    cli = find_docker()
    docker = images.Docker(cli.binary, cli.buildkit)
    run_id = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="kiln-flavour-sizes-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"file://{work / 'mlruns'}")
    index = PackageIndex(work / "index")
    index.add(flavours.SDIST_NAME, *flavours.sdist_package())
    extra = os.environ.get("PIP_EXTRA_INDEX_URL") or subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.extra-index-url"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    loads = [os.getloadavg()[0]]
    rows: list[Row] = []
    stand_ins: set[str] = set()
    try:
        mlflow_base = images.mlflow_base(docker, KILN_BASE)
        shim = builds.make_shim(work / "shim", docker.binary)
        mlflow = None if opts.no_mlflow else builds.MlflowBuilder(REPO / ".venv", shim, docker)
        for flavour in opts.flavour:
            model = models.save(flavour, work / "models" / flavour)
            stand_ins.add(mlflow_from(model))
            env = {"PIP_EXTRA_INDEX_URL": f"{extra} {index.url()}".strip()} if flavour in NO_MLFLOW else {}
            rows.append(_measure(flavour, model, docker, mlflow, mlflow_base, work, run_id, env))
            loads.append(os.getloadavg()[0])
        section = _section(
            rows, docker.size(KILN_BASE) / MB, docker.size(mlflow_base) / MB,
            f"{min(loads):.1f}-{max(loads):.1f} (1 min)",
            subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, check=False).stdout.strip(),
        )  # fmt: skip
    finally:
        index.close()
        docker.cleanup()
        for name in stand_ins:
            images.untag_stand_in(docker, name)
        removed = docker.prune_build_cache_below("99-mlflow-timeouts")  # MLflow's one-off cold builds
        print(f"bench: removed {removed} BuildKit cache records of MLflow's builds", flush=True)
    print(section)
    raw = REPO / ".cache" / "bench" / f"flavour_sizes-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    if not opts.no_write:
        opts.output.write_text(report.replace_section(opts.output.read_text(), SECTION, section))
        print(f"bench: wrote the {SECTION} section of {opts.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
