"""Summarise benchmark runs into medians and write them as a markdown section of docs/benchmarks.md.

Each benchmark owns one section of the file between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->``; writing replaces only that section, so several benchmarks
share the file.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.wrk import WrkResult


@dataclass(frozen=True)
class Run:
    """One measured wrk run of one server in one cell."""

    server: str
    workers: int
    connections: int
    repeat: int
    result: WrkResult
    cpu_seconds: float = 0.0
    """CPU time the server's processes used during the run."""

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_seconds / self.result.requests if self.result.requests else 0.0


@dataclass(frozen=True)
class Cell:
    """The medians of one server over the repeats of one (workers, connections) cell."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    repeats: int
    cpu_ms: float = 0.0
    """Server CPU time per request (all its processes), median over the repeats."""


def cell(runs: Sequence[Run]) -> Cell:
    """Medians of requests/s and latency; errors summed over the repeats."""
    return Cell(
        rps=statistics.median(r.result.rps for r in runs),
        p50_ms=statistics.median(r.result.p50_ms for r in runs),
        p99_ms=statistics.median(r.result.p99_ms for r in runs),
        errors=sum(r.result.errors for r in runs),
        repeats=len(runs),
        cpu_ms=statistics.median(r.cpu_ms_per_request for r in runs),
    )


@dataclass(frozen=True)
class Row:
    """kiln and MLflow side by side at one worker count and one connection count."""

    workers: int
    connections: int
    kiln: Cell
    mlflow: Cell

    @property
    def ratio(self) -> float:
        return self.kiln.rps / self.mlflow.rps if self.mlflow.rps else float("inf")

    def meets(self, target_ratio: float) -> bool:
        """kiln at least ``target_ratio`` times MLflow's requests/s with a lower p99 and no errors."""
        return self.ratio >= target_ratio and self.kiln.p99_ms < self.mlflow.p99_ms and not self.kiln.errors


def rows(runs: Iterable[Run]) -> list[Row]:
    """Group runs by (workers, connections) and pair kiln's medians with MLflow's."""
    groups: dict[tuple[int, int], dict[str, list[Run]]] = {}
    for run in runs:
        groups.setdefault((run.workers, run.connections), {}).setdefault(run.server, []).append(run)
    return [
        Row(workers=w, connections=c, kiln=cell(by["kiln"]), mlflow=cell(by["mlflow"]))
        for (w, c), by in sorted(groups.items())
        if "kiln" in by and "mlflow" in by
    ]


def table(measured: Sequence[Row], target_ratio: float) -> str:
    """The markdown results table, one line per (workers, connections)."""
    lines = [
        "| workers | connections | kiln req/s | MLflow req/s | kiln/MLflow | kiln p50 ms | MLflow p50 ms "
        "| kiln p99 ms | MLflow p99 ms | kiln CPU ms/req | MLflow CPU ms/req | errors kiln/MLflow "
        "| target met |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in measured:
        lines.append(
            f"| {r.workers} | {r.connections} | {r.kiln.rps:,.0f} | {r.mlflow.rps:,.0f} | {r.ratio:.2f}x "
            f"| {r.kiln.p50_ms:.2f} | {r.mlflow.p50_ms:.2f} | {r.kiln.p99_ms:.2f} | {r.mlflow.p99_ms:.2f} "
            f"| {r.kiln.cpu_ms:.2f} | {r.mlflow.cpu_ms:.2f} "
            f"| {r.kiln.errors}/{r.mlflow.errors} | {'yes' if r.meets(target_ratio) else 'no'} |"
        )
    return "\n".join(lines)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_section(document: str, name: str, body: str) -> str:
    """``document`` with section ``name`` replaced by ``body`` (appended when absent)."""
    begin, end = markers(name)
    block = f"{begin}\n{body.strip()}\n{end}"
    start = document.find(begin)
    if start < 0:
        return f"{document.rstrip()}\n\n{block}\n" if document.strip() else f"{block}\n"
    stop = document.find(end, start)
    if stop < 0:
        raise ValueError(f"section {name!r} has {begin} but no {end}")
    return document[:start] + block + document[stop + len(end) :]


def write_section(path: Path, name: str, body: str) -> None:
    """Replace section ``name`` of the markdown file ``path`` with ``body`` (appended when absent)."""
    current = path.read_text() if path.exists() else ""
    path.write_text(replace_section(current, name, body))
    print(f"bench: wrote section {name!r} of {path}")
