"""Start time of one flavour's image: kiln's against MLflow's, ``docker run`` to the first 200.

``bench/runtime_bench.py`` measures the scikit-learn model (memory, start, size). This measures
the start of any model of the flavour matrix (``tests/fixtures/models/flavours.py``), the tiny
pytorch module by default: both images are built on the same base as ``bench/flavour_sizes.py``
builds them, then started alternately (2 workers, the images' defaults otherwise), median of
``--starts``. kiln's ready line gives its phases.

    .venv/bin/python bench/start_bench.py                          # pytorch_tiny, writes the section
    .venv/bin/python bench/start_bench.py --flavour xgboost_classifier --starts 3 --no-write
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import build_bench, builds, flavour_sizes, images, report, runtime_bench

REPO = Path(__file__).resolve().parents[1]
SECTION = "start_bench"


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flavour", default="pytorch_tiny")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args(argv)


def _build(flavour: str, docker: images.Docker, work: Path, run_id: str) -> dict[str, str]:
    from tests.fixtures import models

    model = models.save(flavour, work / "models" / flavour)
    repository = f"kiln-bench/start-{flavour.replace('_', '-')}"
    tags = {tool: f"{repository}:{run_id}-{tool}" for tool in ("kiln", "mlflow")}
    seconds = flavour_sizes._kiln(docker, model, tags["kiln"], {}, work / "kiln.log")
    print(f"bench: kiln image built in {seconds:.0f} s", flush=True)
    stand_in = flavour_sizes.mlflow_from(model)
    images.point_stand_in(docker, stand_in, images.mlflow_base(docker, flavour_sizes.KILN_BASE))
    try:
        mlflow = builds.MlflowBuilder(REPO / ".venv", builds.make_shim(work / "shim", docker.binary), docker)
        build = mlflow.build(model, tags["mlflow"], work / "mlflow.log", kind="cold", repeat=0)
        docker.images.append(tags["mlflow"])
        print(f"bench: MLflow image built in {build.seconds:.0f} s", flush=True)
    finally:
        images.untag_stand_in(docker, stand_in)
    return tags


def _section(flavour: str, results: dict[str, Any], sizes: dict[str, int], machine: str, commit: str) -> str:
    runs = results["seconds"]
    kiln, mlflow = statistics.median(runs["kiln"]), statistics.median(runs["mlflow"])
    listed = {tool: ", ".join(f"{s:.2f}" for s in runs[tool]) for tool in runs}
    return f"""## Start of the `{flavour}` image: kiln vs MLflow

`bench/start_bench.py --flavour {flavour}`, {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, kiln
{commit}. Both images of the flavour matrix's `{flavour}` model on the same Debian bookworm + Python
3.11 base (kiln {sizes["kiln"] / 1e6:,.0f} MB, MLflow {sizes["mlflow"] / 1e6:,.0f} MB), started alternately,
2 workers, `docker run` to the first 200 on `/ping`. Machine: {machine}

Median of {len(runs["kiln"])}: kiln **{kiln:.2f} s**, MLflow **{mlflow:.2f} s**
(ratio **{kiln / mlflow:.2f}**, target 0.50). Runs: kiln {listed["kiln"]}; MLflow {listed["mlflow"]}.
kiln's ready line, per start:
{"; ".join(results["kiln_phases"])}.
"""


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from kiln.backends.docker.cli import find_docker

    cli = find_docker()
    docker = images.Docker(cli.binary, cli.buildkit)
    run_id = uuid.uuid4().hex[:8]
    try:
        with tempfile.TemporaryDirectory(prefix="kiln-start-bench-") as tmp:
            os.environ.setdefault("MLFLOW_TRACKING_URI", f"file://{tmp}/mlruns")
            tags = _build(opts.flavour, docker, Path(tmp), run_id)
            results = runtime_bench._starts(docker, tags, opts.starts, run_id)
            sizes = {tool: docker.size(tag) for tool, tag in tags.items()}
            machine = build_bench._machine(docker)
            commit = build_bench._git("rev-parse", "--short", "HEAD")
    finally:
        docker.cleanup()
    section = _section(opts.flavour, results, sizes, machine, commit)
    print(section)
    if not opts.no_write:
        report.write_section(opts.output, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
