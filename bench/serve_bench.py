"""Serving benchmark: ``kiln serve`` against MLflow, MLServer and BentoML on the same model and load.

Every server serves the ``sklearn_iris`` test fixture on ``POST /invocations`` with one worker
(kiln also with micro-batching on, BentoML also with its adaptive batching), each peer from its
own venv; Debian's ``wrk`` POSTs the model's own ``dataframe_split`` example to each at several
connection counts. Runs alternate between the servers (the order rotates each round), each cell
is repeated, and the medians, the CPU time per request and the targets of issue 12 go into a
section of docs/benchmarks.md.

    .venv/bin/python bench/serve_bench.py                      # the full run (about 10 minutes)
    .venv/bin/python bench/serve_bench.py --servers kiln kiln-batch --connections 32 --duration 3 \\
        --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report, servers, wrk

REPO = Path(__file__).resolve().parents[1]
SECTION = "serve_peers"
SCENARIO = "sklearn_iris"
SERVERS = ("kiln", "kiln-batch", "mlflow", "mlserver", "bentoml", "bentoml-batch")
LABELS = {
    "kiln": "kiln",
    "kiln-batch": "kiln, batching",
    "mlflow": "MLflow",
    "mlserver": "MLServer",
    "bentoml": "BentoML",
    "bentoml-batch": "BentoML, batching",
}


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS), help="who to run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="worker counts (default 1)")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 32], help="wrk connections")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds of warm-up per server")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per server and cell")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the load generator's cores)")
    parser.add_argument("--target-connections", type=int, default=32, help="where the ratio targets apply")
    parser.add_argument("--batch", type=int, default=64, help="kiln's --max-batch-size (requests)")
    parser.add_argument("--bentoml-batch", type=int, default=256, help="BentoML's max_batch_size (rows)")
    cache = REPO / ".cache" / "bench"
    parser.add_argument("--mlflow-venv", type=Path, default=cache / "mlflow-venv")
    parser.add_argument("--bentoml-venv", type=Path, default=cache / "bentoml-venv")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--raw-dir", type=Path, default=cache, help="every run's numbers")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/ alone")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (model, logs, Lua script)")
    return parser.parse_args(argv)


def _save_model(dest: Path) -> Path:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"file://{dest.parent / 'mlruns'}")
    from tests.fixtures import models

    return models.save(SCENARIO, dest)


def _venvs(opts: argparse.Namespace, model: Path) -> dict[str, Path]:
    requirements = model / "requirements.txt"
    venvs: dict[str, Path] = {}
    if "mlflow" in opts.servers:
        venvs["mlflow"] = servers.ensure_mlflow_venv(opts.mlflow_venv, requirements)
    if {"bentoml", "bentoml-batch"} & set(opts.servers):
        venvs["bentoml"] = servers.ensure_bentoml_venv(opts.bentoml_venv, requirements)
    if "mlserver" in opts.servers:
        from tests.server import mlserver

        venvs["mlserver"] = mlserver.ensure_venv()
    return venvs


def _starters(
    opts: argparse.Namespace, model: Path, work: Path, venvs: dict[str, Path], workers: int
) -> dict[str, Callable[[], contextlib.AbstractContextManager[servers.Server]]]:
    return {
        "kiln": lambda: servers.kiln(model, workers, work),
        "kiln-batch": lambda: servers.kiln(model, workers, work, batch=opts.batch, name="kiln-batch"),
        "mlflow": lambda: servers.mlflow(venvs["mlflow"], model, workers, work),
        "mlserver": lambda: servers.mlserver(venvs["mlserver"], model, workers, work),
        "bentoml": lambda: servers.bentoml(venvs["bentoml"], model, work),
        "bentoml-batch": lambda: servers.bentoml(
            venvs["bentoml"], model, work, batch=opts.bentoml_batch, name="bentoml-batch"
        ),
    }


def _predictions(answer: Any) -> Any:
    """The predictions in an answer: ``{"predictions": [...]}``, or the bare list BentoML's batching sends."""
    return answer.get("predictions") if isinstance(answer, dict) else answer


def _check_same_answers(running: list[servers.Server], body: bytes) -> str:
    """Every server must answer 200 with the same predictions; returns kiln's Server header."""
    answers = {server.name: servers.post(server.invocations, body) for server in running}
    expected = _predictions(next(iter(answers.values()))[1])
    for name, (status, answer, _) in answers.items():
        if status != 200 or _predictions(answer) != expected:
            raise SystemExit(
                f"bench: the servers disagree before measuring: {name} {status} {answer!r}, "
                f"expected 200 and the predictions {expected!r} (answers: {answers!r})"
            )
    print(f"bench: all answer 200 with the predictions {json.dumps(expected)}", flush=True)
    return next((header for name, (_, _, header) in answers.items() if name.startswith("kiln")), "")


def _measure_one(
    opts: argparse.Namespace, server: servers.Server, script: Path, cell: tuple[int, int, int]
) -> report.Run:
    workers, connections, repeat = cell
    cpu_before = servers.cpu_seconds(server)
    result = wrk.run(server.invocations, script, connections, opts.duration, opts.threads)
    run = report.Run(
        server.name, workers, connections, repeat, result, servers.cpu_seconds(server) - cpu_before
    )
    print(
        f"bench: workers={workers} connections={connections} run={repeat + 1} {server.name:13} "
        f"{result.rps:8.1f} req/s  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
        f"CPU {run.cpu_ms_per_request:5.2f} ms/req  errors {result.errors}",
        flush=True,
    )
    return run


def _measure(
    opts: argparse.Namespace, model: Path, script: Path, work: Path, body: bytes
) -> tuple[list[report.Run], str]:
    runs: list[report.Run] = []
    header = ""
    venvs = _venvs(opts, model)
    for workers in opts.workers:
        starters = _starters(opts, model, work, venvs, workers)
        with contextlib.ExitStack() as stack:
            running = [stack.enter_context(starters[name]()) for name in opts.servers]
            header = _check_same_answers(running, body)
            for server in running:
                wrk.run(server.invocations, script, max(opts.connections), opts.warmup, opts.threads)
            for repeat in range(opts.repeats):
                for i, connections in enumerate(opts.connections):
                    # Rotate who goes first so drift (heat, noisy neighbours) hits every server alike.
                    shift = (repeat + i) % len(running)
                    for server in running[shift:] + running[:shift]:
                        runs.append(_measure_one(opts, server, script, (workers, connections, repeat)))
    return runs, header


def _version(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip()


def _versions(venv: Path, packages: tuple[str, ...]) -> str:
    code = "from importlib.metadata import version as v; import sys; "
    code += "print(', '.join(f'{p} {v(p)}' for p in sys.argv[1:]))"
    return _version([str(venv / "bin" / "python"), "-c", code, *packages])


def _machine(venvs: dict[str, Path], load: str) -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )  # fmt: skip
    peers = {
        "mlflow": ("mlflow", "uvicorn", "scikit-learn"),
        "mlserver": ("mlserver", "mlserver-mlflow", "mlflow", "uvicorn", "scikit-learn"),
        "bentoml": ("bentoml", "mlflow", "uvicorn", "scikit-learn"),
    }
    sides = "; ".join(f"{name} venv: {_versions(venvs[name], peers[name])}" for name in venvs)
    commit = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _version(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
    nginx = _version(["nginx", "-v"]).replace("nginx version: ", "")
    return (
        f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}. kiln {metadata.version('kiln')} (git {commit}"
        f"{', src/ modified' if dirty else ''}) with uvicorn {metadata.version('uvicorn')} and {nginx}; "
        f"{sides}; {wrk.version()}. Load average before/after: {load}."
    )


def _cells(runs: list[report.Run]) -> dict[tuple[int, int], dict[str, report.Cell]]:
    groups: dict[tuple[int, int], dict[str, list[report.Run]]] = {}
    for run in runs:
        groups.setdefault((run.workers, run.connections), {}).setdefault(run.server, []).append(run)
    return {
        key: {name: report.cell(found) for name, found in by.items()} for key, by in sorted(groups.items())
    }


def _table(cells: dict[tuple[int, int], dict[str, report.Cell]]) -> str:
    lines = [
        "| workers | connections | server | req/s | x MLflow | p50 ms | p99 ms | CPU ms/req | errors |",
        "|---:|---:|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for (workers, connections), by in cells.items():
        base = by.get("mlflow")
        for name in SERVERS:
            c = by.get(name)
            if c is None:
                continue
            ratio = f"{c.rps / base.rps:.2f}x" if base is not None and base.rps else "-"
            lines.append(
                f"| {workers} | {connections} | {LABELS[name]} | {c.rps:,.0f} | {ratio} | {c.p50_ms:.2f} "
                f"| {c.p99_ms:.2f} | {c.cpu_ms:.2f} | {c.errors} |"
            )
    return "\n".join(lines)


def _targets(cells: dict[tuple[int, int], dict[str, report.Cell]], at: int) -> list[str]:
    """Issue 12's targets, cell by cell: met or not, with the numbers (the ratios at ``at`` connections)."""
    lines = []
    for (workers, connections), by in cells.items():
        batch, plain = by.get("kiln-batch"), by.get("kiln")
        where = f"{workers} worker(s), {connections} connection(s)"
        for peer, factor in (("mlflow", 10.0), ("bentoml-batch", 3.0)) if connections == at else ():
            other = by.get(peer)
            if batch is not None and other is not None and other.rps:
                ratio = batch.rps / other.rps
                verdict = "met" if ratio >= factor else "**not met**"
                lines.append(
                    f"- {where}: kiln with batching {ratio:.1f}x {LABELS[peer]} "
                    f"(target >= {factor:g}x): {verdict}"
                )
        if batch is not None and plain is not None:
            verdict = "met" if batch.p99_ms <= plain.p99_ms else "**not met**"
            lines.append(
                f"- {where}: p99 with batching {batch.p99_ms:.2f} ms vs {plain.p99_ms:.2f} ms "
                f"without: {verdict}"
            )
        if plain is not None:
            behind = [LABELS[n] for n, c in by.items() if not n.startswith("kiln") and c.rps >= plain.rps]
            verdict = "met" if not behind else f"**not met** (behind {', '.join(behind)})"
            lines.append(f"- {where}: kiln without batching ahead of every peer in req/s: {verdict}")
    return lines


def _section(opts: argparse.Namespace, runs: list[report.Run], machine: str, header: str) -> str:
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/serve_bench.py", *sys.argv[1:]])
    cells = _cells(runs)
    targets = "\n".join(_targets(cells, opts.target_connections))
    return f"""
## Serving: kiln (with and without micro-batching) vs MLflow, MLServer and BentoML (issue 12)

Measured {dt.date.today().isoformat()} by `bench/serve_bench.py`, all servers side by side in one run.

- Model: the `{SCENARIO}` test fixture (scikit-learn LogisticRegression, 4 float columns), saved by MLflow.
- Request: `POST /invocations`, `Content-Type: application/json`, the model's own
  `serving_input_example.json` (`dataframe_split`, 3 rows), the same body to every server; each was
  checked to answer 200 with the same predictions before measuring.
- kiln: `kiln serve -m MODEL --workers N` (nginx in front of uvicorn; `Server: {header or "none"}`);
  "batching": `--max-batch-size {opts.batch}` with the default `--max-batch-delay`.
- MLflow: `mlflow models serve -m MODEL --env-manager local --workers N`.
- MLServer: `mlserver start` with `mlserver_mlflow.MLflowRuntime`, its MLflow-compatible
  `/invocations`; one worker is `parallel_workers: 0` (one process for HTTP and inference): its
  default pool of one inference process does not start with uvloop 0.21 (MLServer 1.7.1 calls
  `asyncio.get_event_loop()` in the worker before it has a loop).
- BentoML: `bentoml serve` of `bench/bentoml_service.py` (one worker; the model loaded with
  `mlflow.pyfunc.load_model`); "batching": `batchable=True`, `max_batch_size={opts.bentoml_batch}` rows.
  BentoML 1.4.40 cannot batch a DataFrame input (its `PandasDataFrameContainer.get_batch_size`
  returns a tuple and every batched request times out), so the batched service takes the rows as an
  ndarray and rebuilds the signature's DataFrame per batch, and answers the bare prediction list.
- Load: `wrk --latency`, {opts.threads} thread, keep-alive connections, {opts.duration:g} s per run after
  {opts.warmup:g} s of warm-up per server; {opts.repeats} runs per cell, the servers' order rotating;
  **medians** shown. CPU ms/req is the CPU time (user + system) of all the server's processes per
  answered request. Errors are non-2xx answers plus socket errors, summed over the runs.

{_table(cells)}

Targets (issue 12: 1 worker, {opts.target_connections} connections, with batching at least 10x MLflow's
requests/s and 3x BentoML's batching; in every cell p99 with batching no worse than without, and
kiln without batching ahead of every peer):

{targets}

Machine: {machine}

Command: `{command}`
"""


@contextlib.contextmanager
def _work_dir(keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    try:
        yield work
    finally:
        if keep:
            print(f"bench: work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk not found on PATH (run scripts/setup, or apt-get install wrk)")
    with _work_dir(opts.keep) as work:
        model = _save_model(work / "model")
        body_text = json.dumps(json.loads((model / "serving_input_example.json").read_text()))
        script = work / "post.lua"
        script.write_text(wrk.lua_script(body_text))
        load_before = os.getloadavg()[0]
        runs, header = _measure(opts, model, script, work, body_text.encode())
        # Other work on the machine skews every server; say how busy it was.
        load = f"{load_before:.2f}/{os.getloadavg()[0]:.2f} (1 min)"
        section = _section(opts, runs, _machine(_venvs(opts, model), load), header)
        print(section)
        raw = opts.raw_dir / f"serve_bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps([asdict(r) for r in runs], indent=1))
        print(f"bench: every run's numbers in {raw}")
        if not opts.no_write:
            report.write_section(opts.output, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
