"""Serving benchmark: ``kiln serve`` against ``mlflow models serve`` on the same model and load.

Both serve the ``sklearn_iris`` test fixture with the same worker count; Debian's
``wrk`` POSTs the model's own ``dataframe_split`` example to each at several
connection counts. Runs of the two servers alternate, each cell is repeated, and
the medians and the kiln/MLflow ratio go into a section of docs/benchmarks.md.

    .venv/bin/python bench/serve_bench.py                      # the full run (about 8 minutes)
    .venv/bin/python bench/serve_bench.py --workers 1 --connections 8 --duration 3 --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report, servers, wrk

REPO = Path(__file__).resolve().parents[1]
SECTION = "serve_bench"
SCENARIO = "sklearn_iris"


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32], help="wrk connections")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up per server")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per server and cell")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the load generator's cores)")
    parser.add_argument("--target", type=float, default=3.0, help="kiln/MLflow requests/s ratio to meet")
    parser.add_argument("--mlflow-venv", type=Path, default=REPO / ".cache" / "bench" / "mlflow-venv")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--raw-dir", type=Path, default=REPO / ".cache" / "bench", help="every run's numbers")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/ alone")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (model, logs, Lua script)")
    return parser.parse_args(argv)


def _save_model(dest: Path) -> Path:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"file://{dest.parent / 'mlruns'}")
    from tests.fixtures import models

    return models.save(SCENARIO, dest)


def _check_same_answers(kiln: servers.Server, mlflow: servers.Server, body: bytes) -> str:
    """Both must answer 200 with identical predictions; returns kiln's Server header."""
    k_status, k_body, k_server = servers.post(kiln.invocations, body)
    m_status, m_body, _ = servers.post(mlflow.invocations, body)
    if k_status != 200 or m_status != 200 or k_body != m_body:
        raise SystemExit(
            f"bench: the servers disagree before measuring: kiln {k_status} {k_body!r}, "
            f"MLflow {m_status} {m_body!r} (expected 200 and identical predictions)"
        )
    print(f"bench: both answer 200 {json.dumps(k_body)}", flush=True)
    return k_server


def _measure(
    opts: argparse.Namespace, model: Path, venv: Path, script: Path, work: Path, body: bytes
) -> tuple[list[report.Run], dict[int, str]]:
    runs: list[report.Run] = []
    kiln_server_header: dict[int, str] = {}
    for workers in opts.workers:
        with (
            servers.kiln(model, workers, work) as kiln,
            servers.mlflow(venv, model, workers, work) as mlflow,
        ):
            kiln_server_header[workers] = _check_same_answers(kiln, mlflow, body)
            for server in (kiln, mlflow):
                wrk.run(server.invocations, script, max(opts.connections), opts.warmup, opts.threads)
            for repeat in range(opts.repeats):
                for i, connections in enumerate(opts.connections):
                    # Alternate who goes first so drift (heat, noisy neighbours) hits both alike.
                    order = (kiln, mlflow) if (repeat + i) % 2 == 0 else (mlflow, kiln)
                    for server in order:
                        cpu_before = servers.cpu_seconds(server)
                        result = wrk.run(server.invocations, script, connections, opts.duration, opts.threads)
                        cpu = servers.cpu_seconds(server) - cpu_before
                        runs.append(report.Run(server.name, workers, connections, repeat, result, cpu))
                        print(
                            f"bench: workers={workers} connections={connections} run={repeat + 1} "
                            f"{server.name:6} {result.rps:8.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                            f"p99 {result.p99_ms:7.2f} ms  CPU {runs[-1].cpu_ms_per_request:5.2f} ms/req  "
                            f"errors {result.errors}",
                            flush=True,
                        )
    return runs, kiln_server_header


def _version(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip()


def _machine(venv: Path, load: str) -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )  # fmt: skip
    mlflow_side = _version(
        [str(venv / "bin" / "python"), "-c",
         "from importlib.metadata import version as v; "
         "print(f\"mlflow {v('mlflow')}, uvicorn {v('uvicorn')}, scikit-learn {v('scikit-learn')}\")"]
    )  # fmt: skip
    commit = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _version(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
    nginx = _version(["nginx", "-v"]).replace("nginx version: ", "")
    return (
        f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}. kiln {metadata.version('kiln')} (git {commit}"
        f"{', src/ modified' if dirty else ''}) with uvicorn {metadata.version('uvicorn')} and {nginx}; "
        f"MLflow venv: {mlflow_side}; {wrk.version()}. Load average before/after: {load}."
    )


def _section(opts: argparse.Namespace, rows: list[report.Row], machine: str, headers: dict[int, str]) -> str:
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/serve_bench.py", *sys.argv[1:]])
    front = " / ".join(sorted({f"`Server: {h}`" if h else "no `Server` header" for h in headers.values()}))
    met = sum(r.meets(opts.target) for r in rows)
    return f"""
## Serving: `kiln serve` vs `mlflow models serve`

Measured {dt.date.today().isoformat()} by `bench/serve_bench.py`, both servers side by side in one run.

- Model: the `{SCENARIO}` test fixture (scikit-learn LogisticRegression, 4 float columns), saved by MLflow.
- Request: `POST /invocations`, `Content-Type: application/json`, the model's own
  `serving_input_example.json` (`dataframe_split`, 3 rows); both servers were checked to answer 200
  with identical predictions before measuring.
- kiln: `kiln serve -m MODEL --workers N` (nginx in front of uvicorn; its answers carried {front}).
- MLflow: `mlflow models serve -m MODEL --env-manager local --workers N`, MLflow 3.17.2 in its own venv.
- Load: `wrk --latency`, {opts.threads} thread, keep-alive connections, {opts.duration:g} s per run after
  {opts.warmup:g} s of warm-up per server; {opts.repeats} runs per cell, kiln and MLflow alternating;
  **medians** shown. CPU ms/req is the CPU time (user + system) of all the server's processes
  (supervisor, nginx, workers) per answered request: it depends much less than req/s on what
  else the machine is doing. Errors are non-2xx answers plus socket errors, summed over the runs.
- Target: kiln >= {opts.target:g}x MLflow's requests/s at equal workers, with a lower p99
  (met in {met} of {len(rows)} cells).

{report.table(rows, opts.target)}

Machine: {machine}

Command: `{command}`
"""


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk not found on PATH (run scripts/setup, or apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    try:
        model = _save_model(work / "model")
        body_text = json.dumps(json.loads((model / "serving_input_example.json").read_text()))
        script = work / "post.lua"
        script.write_text(wrk.lua_script(body_text))
        venv = servers.ensure_mlflow_venv(opts.mlflow_venv, model / "requirements.txt")
        load_before = os.getloadavg()[0]
        runs, headers = _measure(opts, model, venv, script, work, body_text.encode())
        # Other work on the machine skews both servers; say how busy it was.
        load = f"{load_before:.2f}/{os.getloadavg()[0]:.2f} (1 min)"
        rows = report.rows(runs)
        section = _section(opts, rows, _machine(venv, load), headers)
        print(section)
        raw = opts.raw_dir / f"serve_bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps([asdict(r) for r in runs], indent=1))
        print(f"bench: every run's numbers in {raw}")
        if not opts.no_write:
            current = opts.output.read_text() if opts.output.exists() else ""
            opts.output.write_text(report.replace_section(current, SECTION, section))
            print(f"bench: wrote section {SECTION!r} of {opts.output}")
    finally:
        if opts.keep:
            print(f"bench: work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
