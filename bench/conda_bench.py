"""``kiln build --env-manager conda`` next to the virtualenv image of the same model: cold, rebuild, size.

The model is scikit-learn on iris saved by MLflow with a conda.yaml whose scientific stack
(python, numpy, scipy, scikit-learn, pandas) comes from the tests' conda channel
(``tests/conda_channel``, served on 127.0.0.1) and MLflow from the pip section. The conda image
is built on a Debian base without Python (``kiln-test/debian:bookworm-nopython``), the
virtualenv image of the same model on ``kiln-test/python:3.11-slim``. Cold: empty kiln caches
and ``--no-cache``; rebuild: new weights, same environment. The section goes to
docs/benchmarks.md (``conda_bench``).

    .venv/bin/python bench/conda_bench.py [--rebuilds 2] [--no-write]

(The brief asked for a row in build_bench.py; that script is past the 400-line limit, so conda
has its own, built from the same pieces: ``bench.builds.KilnBuilder`` and ``bench.images``.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conda_channel.build import build_channel
from tests.conda_channel.models import ensure_no_python_base, save_conda_model
from tests.conda_channel.serve import ChannelServer

from bench import builds, images, report
from bench.build_bench import KILN_BASE, MB, _retrain, _snapshot_kiln

REPO = Path(__file__).resolve().parents[1]
SECTION = "conda_bench"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rebuilds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    opts = parser.parse_args(argv)
    from kiln.backends.docker.cli import find_docker

    cli = find_docker()
    docker = images.Docker(cli.binary, cli.buildkit)
    work = Path(tempfile.mkdtemp(prefix="kiln-conda-bench-"))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"file://{work / 'mlruns'}")
    try:
        no_python = ensure_no_python_base(docker.binary)
        (work / "condarc").write_text("{}\n")
        os.environ["CONDARC"] = str(work / "condarc")
        snapshot, commit = _snapshot_kiln(work / "snapshot", "worktree")
        with ChannelServer(build_channel()) as channel:
            model = save_conda_model(work / "model", channel.url)
            rows = [
                _measure("virtualenv", model, work, docker, snapshot, KILN_BASE, (), opts.rebuilds),
                _measure("conda", model, work, docker, snapshot, no_python, ("--env-manager", "conda"),
                         opts.rebuilds),
            ]  # fmt: skip
        section = _section(rows, commit, docker.buildkit)
        print(section)
        if not opts.no_write:
            report.write_section(opts.output, SECTION, section)
    finally:
        docker.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _measure(
    name: str,
    model: Path,
    work: Path,
    docker: images.Docker,
    snapshot: Path,
    base: str,
    args: tuple[str, ...],
    rebuilds: int,
) -> dict[str, object]:
    kiln = builds.KilnBuilder(sys.executable, snapshot, base, docker, host_pip_config=True, extra_args=args)
    caches, logs = work / f"caches-{name}", work / f"logs-{name}"
    logs.mkdir()
    image = f"kiln-bench/conda-bench:{name}"
    cold = kiln.build(model, image, caches, logs / "cold.log", kind="cold", repeat=0)
    print(f"bench: {name} cold {cold.seconds:.1f} s", flush=True)
    size = docker.size(image)
    again = []
    for repeat in range(rebuilds):
        _retrain(model, c=0.01 * 3**repeat, scratch=work / "retrained")
        build = kiln.build(model, image, caches, logs / f"rebuild{repeat}.log", kind="rebuild", repeat=repeat)
        print(f"bench: {name} rebuild {build.seconds:.1f} s, ran {list(build.steps.run)}", flush=True)
        again.append(build)
    return {
        "name": name,
        "base": base,
        "cold": cold.seconds,
        "rebuild": statistics.median(b.seconds for b in again) if again else float("nan"),
        "rebuild_ran": sorted({step for b in again for step in b.steps.run}),
        "size": size,
        "base_size": docker.size(base),
    }


def _section(rows: list[dict[str, object]], commit: str, buildkit: bool) -> str:
    lines = [
        "## conda_bench: `--env-manager conda` next to virtualenv (same sklearn model)",
        "",
        f"`bench/conda_bench.py`, kiln {commit}, {'BuildKit' if buildkit else 'classic builder'}; one cold "
        "build each (empty kiln caches, `--no-cache`), the median of the model-only rebuilds; the host's "
        "pip configuration (local wheel mirror) for the pip parts; the conda packages from the tests' "
        "channel on 127.0.0.1.",
        "",
        "| env manager | base | cold build | model-only rebuild | image | of which base "
        "| steps run on rebuild |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        size, base_size = int(str(row["size"])), int(str(row["base_size"]))
        lines.append(
            f"| {row['name']} | `{row['base']}` | {float(str(row['cold'])):.1f} s | "
            f"{float(str(row['rebuild'])):.1f} s | {size / MB:.0f} MB | {base_size / MB:.0f} MB | "
            f"{', '.join(str(step) for step in row['rebuild_ran'])} |"  # type: ignore[attr-defined]
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
