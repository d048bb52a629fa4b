"""The two-platform rows of ``bench/oci_bench.py`` on their own: ``kiln build --backend oci --platform
linux/amd64,linux/arm64`` next to ``--platform linux/amd64``, cold and after a model-only change.

Both build the same model (the ``sklearn_iris`` fixture with its requirements trimmed to what it
imports) on the same two-platform OCI layout of the test base and its arm64 twin, with
``--output docker`` (the host's platform is loaded into Docker; the arm64 image is built without
emulation, from arm64 wheels and Debian packages) and ``--no-load-check`` (a multi-platform build
runs none, so a single-platform one's would count on one side only). Nothing else is timed, so this
runs in a few minutes where ``oci_bench.py`` with its Docker-backend, MLflow and push rows takes
ten. Medians go into the ``oci_platforms_bench`` section of docs/benchmarks.md.

    flock /tmp/kiln-docker.lock .venv/bin/python bench/oci_platforms_bench.py
    .venv/bin/python bench/oci_platforms_bench.py --cold 1 --rebuilds 1 --no-write
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import build_bench, images, report
from bench.oci_bench import KILN_BASE, PLATFORM_TOOLS, Bench, Timed, _median, _two_platform

REPO = Path(__file__).resolve().parents[1]
SECTION = "oci_platforms_bench"


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cold", type=int, default=1, help="cold builds per platform set (default 1)")
    parser.add_argument("--rebuilds", type=int, default=3, help="model-only rebuilds per set (default 3)")
    parser.add_argument("--kiln-source", choices=("head", "worktree"), default="head")
    parser.add_argument("--host-pip-config", action="store_true", help="see bench/build_bench.py")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/ alone")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    opts = parser.parse_args(argv)
    opts.two_platform = True
    return opts


def _cell(runs: Sequence[Timed], tool: str, kind: str) -> str:
    values = [r.seconds for r in runs if r.tool == tool and r.kind == kind]
    listed = ", ".join(f"{v:.1f}" for v in values)
    return f"{_median(values):.1f} ({listed})" if values else "n/a"


def _reused(runs: Sequence[Timed], tool: str) -> str:
    return ", ".join(sorted({r.layers_reused for r in runs if r.tool == tool and r.kind == "rebuild"})) or "?"


def _table(runs: Sequence[Timed]) -> str:
    n_cold = len([r for r in runs if r.tool == "oci-1p" and r.kind == "cold"])
    n_re = len([r for r in runs if r.tool == "oci-1p" and r.kind == "rebuild"])
    rows = [
        "| `kiln build --backend oci --output docker`, trimmed `sklearn_iris` "
        "| one platform (`linux/amd64`) | two platforms (`linux/amd64,linux/arm64`) |",
        "|---|---:|---:|",
        f"| cold build, s (median of {n_cold}; each run) "
        f"| {_cell(runs, 'oci-1p', 'cold')} | {_cell(runs, 'oci-2p', 'cold')} |",
        f"| rebuild after a model-only change, s (median of {n_re}; each run) "
        f"| {_cell(runs, 'oci-1p', 'rebuild')} | {_cell(runs, 'oci-2p', 'rebuild')} |",
        f"| layers reused by the rebuilds | {_reused(runs, 'oci-1p')} | {_reused(runs, 'oci-2p')} |",
    ]
    return "\n".join(rows)


def _section(runs: Sequence[Timed], load: str, commit: str, machine: str) -> str:
    command = " ".join(
        shlex.quote(a) for a in [".venv/bin/python", "bench/oci_platforms_bench.py", *sys.argv[1:]]
    )
    return f"""
## Two platforms in one build: `--platform linux/amd64,linux/arm64` (issue 14)

Measured {dt.date.today().isoformat()} by `bench/oci_platforms_bench.py` (the two-platform rows of
`bench/oci_bench.py` on their own), one run; the machine was shared with other work (load average
{load}), so times are noisy and only comparable within the run.

{_table(runs)}

**What is measured.** Wall-clock time of the whole `kiln build` command. Both build on a two-platform
OCI layout of `{KILN_BASE}` and its arm64 twin (`oci:LAYOUT:3.11-slim`, made from `docker save`
archives by `tests/oci/multiarch.py`), with `--output docker` (Docker gets the host's platform;
the arm64 image is written to kiln's blob store and the index names both) and `--no-load-check` on
both (a multi-platform build runs no load check; a single-platform one's would count on one side
only). **Cold**: empty `KILN_CACHE_DIR` and `--no-cache`: each platform's lock resolved by uv for
that platform, its wheels downloaded, its Debian packages fetched from the base's per-arch apt
lists, every layer written
and gzipped on the host; nothing runs under emulation. **Rebuild**: `model.skops` overwritten with
retrained weights; per platform the system-packages, environment and kiln layers come from the layer
cache and the model layer (which carries the SBOM) is written again, then SBOM and provenance are
made again for each image. The two-platform build does each platform's work in turn (no
parallelism); what the platforms share (the base layout's blobs, the host's tools) is done once.

Commands (`MODEL` the trimmed fixture, `NAME` a fresh tag per build, kiln from a frozen copy at git
{commit}):

```bash
python -m kiln build -m MODEL -n NAME --base-image oci:LAYOUT:3.11-slim --backend oci --output docker \\
    --no-load-check --platform linux/amd64 [--no-cache]
python -m kiln build -m MODEL -n NAME --base-image oci:LAYOUT:3.11-slim --backend oci --output docker \\
    --no-load-check --platform linux/amd64,linux/arm64 [--no-cache]
```

Machine: {machine}

Command: `flock /tmp/kiln-docker.lock {command}`
"""


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    from kiln.backends.docker.cli import find_docker

    cli = find_docker()
    docker = images.Docker(cli.binary, cli.buildkit)
    build_bench._ensure_kiln_base(docker, KILN_BASE)
    work = Path(tempfile.mkdtemp(prefix="kiln-oci-platforms-bench-"))
    began = time.monotonic()
    try:
        model = build_bench._save_model(work / "model")
        snapshot, commit = build_bench._snapshot_kiln(work / "snapshot", opts.kiln_source)
        archive = work / "base.tar"
        docker.run("save", "--output", str(archive), KILN_BASE, timeout=600)
        # No registry and no MLflow here: only the two OCI-backend rows are built.
        bench = Bench(work, docker, snapshot, archive, "", opts, work / "no-mlflow")
        if not _two_platform(opts, bench, docker, model):
            raise SystemExit("bench: no arm64 base and none can be made here")
        tools = tuple(PLATFORM_TOOLS)
        loads = [build_bench._load()]
        runs: list[Timed] = []
        for repeat in range(opts.cold):
            for tool in tools if repeat % 2 == 0 else tools[::-1]:
                runs.append(bench.build(tool, model, "cold", repeat))
                loads.append(build_bench._load())
                print(f"bench: cold {repeat + 1} {tool} {runs[-1].seconds:6.1f} s", flush=True)
        for repeat in range(opts.rebuilds):
            build_bench._retrain(model, c=0.01 * 3**repeat, scratch=work / "retrained")
            assert bench.trimmed is not None
            shutil.copy2(model / "model.skops", bench.trimmed / "model.skops")
            for tool in tools if repeat % 2 == 0 else tools[::-1]:
                runs.append(bench.build(tool, model, "rebuild", repeat))
                loads.append(build_bench._load())
                print(
                    f"bench: rebuild {repeat + 1} {tool} {runs[-1].seconds:6.1f} s {runs[-1].layers_reused}",
                    flush=True,
                )
        load = f"{loads[0]:.2f} before, {loads[-1]:.2f} after, {min(loads):.2f}-{max(loads):.2f} during"
        section = _section(runs, load, commit, build_bench._machine(docker))
        print(section)
        raw = REPO / ".cache" / "bench" / f"oci_platforms_bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps({"runs": [dataclasses.asdict(r) for r in runs], "loads": loads}, indent=1))
        print(f"bench: every run's numbers in {raw}; took {(time.monotonic() - began) / 60:.1f} min")
        if not opts.no_write:
            report.write_section(opts.output, SECTION, section)
    finally:
        build_bench.clean_up(docker, "", work, keep=opts.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
