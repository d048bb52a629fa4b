"""``python -m bench.reliability [--quick] [--only a,b]``: run the sections, write docs/reliability.md.

Every module of this package with a ``run(quick) -> Section`` is a section. Each run's
result is saved as JSON under bench/reliability/results/, so ``--only`` re-runs some
sections and the document keeps the others' last results (each says when and where it
ran). A section whose module is not there yet is listed with a note.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import bench.reliability as package
from bench.reliability.table import Section, Trial, render_section, render_trials

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
OUTPUT = REPO / "docs" / "reliability.md"
EXPECTED = ("fuzz", "limits", "faults", "overload", "security")
"""Sections in document order; any other module with a ``run`` comes after them."""

Runner = Callable[[bool], Section]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reliability",
        description="Run the reliability sections, write docs/reliability.md.",
    )
    parser.add_argument("--quick", action="store_true", help="shorter load phases and fewer requests")
    parser.add_argument("--only", default="", help="comma-separated sections to re-run (default: all)")
    parser.add_argument(
        "--render", action="store_true", help="run nothing: rewrite the document from saved results"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT.relative_to(REPO)}")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"default: {RESULTS.relative_to(REPO)}")
    args = parser.parse_args(argv)
    runners = discover()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(runners)
    if args.render:
        chosen = []
    unknown = [name for name in chosen if name not in runners]
    if unknown:
        parser.error(f"no section {', '.join(unknown)} (there are: {', '.join(runners) or 'none'})")
    args.results.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        print(f"==> {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        section = _run(name, runners[name], args.quick)
        save(args.results, name, section, quick=args.quick, seconds=time.monotonic() - started)
        failed = sum(not t.passed for t in section.trials)
        print(f"    {len(section.trials)} rows, {failed} not OK", file=sys.stderr, flush=True)
    args.output.write_text(render(runners, args.results), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def discover() -> dict[str, Runner]:
    """Modules of this package that have a ``run``, expected ones first."""
    found: dict[str, Runner] = {}
    names = [info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_")]
    for name in sorted(names, key=lambda n: (EXPECTED.index(n) if n in EXPECTED else len(EXPECTED), n)):
        try:
            run = getattr(importlib.import_module(f"bench.reliability.{name}"), "run", None)
        except Exception as exc:  # another section's module may be half-written: report it when run
            run = _unimportable(name, exc)
        if callable(run):
            found[name] = run
    return found


def _unimportable(name: str, exc: Exception) -> Runner:
    def run(quick: bool) -> Section:
        raise RuntimeError(f"bench/reliability/{name}.py cannot be imported: {exc!r}")

    return run


def _run(name: str, runner: Runner, quick: bool) -> Section:
    try:
        return runner(quick)
    except Exception as exc:  # a broken section is reported, not allowed to hide the others
        trace = traceback.format_exc(limit=3)
        row = Trial(name, f"run the {name} section", 0, f"the section crashed: {exc!r}", passed=False)
        return Section(name, (row,), f"```\n{trace}```")


def save(results: Path, name: str, section: Section, *, quick: bool, seconds: float) -> None:
    """Keep one section's result, with when, how long, which commit and which machine."""
    record = {
        "section": dataclasses.asdict(section),
        "ran_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick,
        "seconds": round(seconds),
        "commit": _commit(),
        "machine": machine(),
    }
    (results / f"{name}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", "utf-8")


def _load(results: Path, name: str) -> tuple[Section, dict[str, object]] | None:
    path = results / f"{name}.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    data = record.pop("section")
    trials = tuple(Trial(**row) for row in data["trials"])
    return Section(data["title"], trials, data.get("notes", "")), record


def render(runners: dict[str, Runner], results: Path) -> str:
    """The whole document from the saved results of every known section."""
    names = list(dict.fromkeys([*EXPECTED, *runners]))
    loaded = {name: _load(results, name) for name in names if name in runners}
    summary = ["| Section | Rows | OK | Times tried | Run |", "|---|---:|---:|---:|---|"]
    bodies, missing, machines, failing = [], [], set(), []
    for name in names:
        result = loaded.get(name)
        if result is None:
            why = "not run yet" if name in runners else f"bench/reliability/{name}.py is not there yet"
            missing.append(f"- `{name}`: {why}.")
            continue
        section, meta = result
        ok = sum(t.passed for t in section.trials)
        tried = sum(t.attempts for t in section.trials)
        mode = "quick" if meta["quick"] else "full"
        when = f"{meta['ran_at']}, {mode}, {meta['seconds']} s, kiln {meta['commit']}"
        title = f"[{section.title}](#{_anchor(section.title)})"
        summary.append(f"| {title} | {len(section.trials)} | {ok} | {tried:,} | {when} |")
        bodies.append(render_section(section))
        machines.add(str(meta["machine"]))
        failing += [t for t in section.trials if not t.passed]
    parts = [INTRO, "## Summary\n", "\n".join(summary) + "\n"]
    if missing:
        parts.append("Sections without results:\n\n" + "\n".join(missing) + "\n")
    parts.append("## Machine\n\n" + "\n\n".join(sorted(machines) or ["(no section has run)"]) + "\n")
    parts += bodies
    if failing:
        parts.append("## Not OK\n\n" + render_trials(failing))
    return "\n".join(parts)


INTRO = """# Reliability

What kiln's runtime and builder were put through, how many times, and what happened. Every
row below is a real run against real processes: images built by `kiln build` from the
fixture models in `tests/fixtures/models`, run in Docker, driven by real clients; the builder
driven through its CLI. Nothing here is typed by hand: this file is written by

```bash
.venv/bin/python -m bench.reliability                   # every section (about 10 minutes on 2 cores)
.venv/bin/python -m bench.reliability --quick           # shorter load phases
.venv/bin/python -m bench.reliability --only faults,security   # re-run some, keep the rest
```

Each section is a module `bench/reliability/<section>.py`. Some drive the runtime themselves;
the faults and security sections run their tests (`tests/e2e/test_faults.py`,
`tests/e2e/test_security.py`, `tests/cli/test_build_security.py` and four checks of
`tests/e2e/test_image.py`) and report what each test measured, OK when it passed. Raw
results are in `bench/reliability/results/` (`--render` rewrites this file from them). It
needs what `scripts/test` needs (Docker, the local base image, `.venv`); `scripts/setup`
provides it.
"""


def machine() -> str:
    """CPUs, memory, kernel, cgroup version, Docker and Python of this machine, in one line."""
    cpu = "unknown CPU"
    memory = "unknown memory"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
        kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
        memory = f"{kib / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    cgroup = "cgroup v2" if Path("/sys/fs/cgroup/cgroup.controllers").is_file() else "cgroup v1"
    docker = _output(["docker", "version", "--format", "{{.Server.Version}}"]) or "no Docker"
    return (
        f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), {memory} RAM, Linux {platform.release()} ({cgroup}), "
        f"Docker {docker}, Python {platform.python_version()}; shared with other work."
    )


def _commit() -> str:
    commit = _output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "unknown"
    # The report's own outputs (results/, docs/reliability.md) change as sections run: not kiln's code.
    dirty = _output(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", ".",
         ":(exclude)bench/reliability/results", ":(exclude)docs/reliability.md"]
    )  # fmt: skip
    return f"{commit}{' + uncommitted changes' if dirty else ''}"


def _output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _anchor(title: str) -> str:
    """GitHub's anchor for a heading: lower case, spaces to dashes, punctuation dropped."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


if __name__ == "__main__":
    sys.exit(main())
