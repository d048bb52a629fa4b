"""bench.report: medians side by side, the markdown table, and the shared docs file's sections."""

from __future__ import annotations

import pytest

from bench import report, wrk


def _run(
    server: str,
    connections: int,
    repeat: int,
    requests: int,
    p99_ms: float,
    errors: int = 0,
    cpu: float = 0.0,
) -> report.Run:
    result = wrk.WrkResult(
        requests=requests, seconds=10.0, p50_ms=p99_ms / 2, p99_ms=p99_ms, non_2xx=errors, socket_errors=0
    )
    return report.Run(
        server=server, workers=1, connections=connections, repeat=repeat, result=result, cpu_seconds=cpu
    )


def test_rows_pair_the_medians_of_each_server_per_cell() -> None:
    runs = [
        _run("kiln", 8, 0, 30_000, 5.0, cpu=15.0),
        _run("kiln", 8, 1, 10_000, 9.0, cpu=10.0),  # an outlier run: the median ignores it
        _run("kiln", 8, 2, 31_000, 4.0, cpu=15.5),
        _run("mlflow", 8, 0, 9_000, 30.0, cpu=18.0),
        _run("mlflow", 8, 1, 10_000, 20.0, cpu=20.0),
        _run("mlflow", 8, 2, 11_000, 25.0, errors=2, cpu=22.0),
        _run("kiln", 1, 0, 5_000, 1.0),  # no MLflow run in this cell: no row
    ]

    [row] = report.rows(runs)

    assert (row.workers, row.connections) == (1, 8)
    assert row.kiln == report.Cell(rps=3_000.0, p50_ms=2.5, p99_ms=5.0, errors=0, repeats=3, cpu_ms=0.5)
    assert row.mlflow == report.Cell(rps=1_000.0, p50_ms=12.5, p99_ms=25.0, errors=2, repeats=3, cpu_ms=2.0)
    assert row.ratio == pytest.approx(3.0)
    assert row.meets(3.0)
    assert not row.meets(3.1)


def test_a_slower_p99_or_any_error_misses_the_target() -> None:
    slow_tail = report.rows([_run("kiln", 1, 0, 40_000, 50.0), _run("mlflow", 1, 0, 1_000, 20.0)])[0]
    errors = report.rows([_run("kiln", 1, 0, 40_000, 5.0, errors=1), _run("mlflow", 1, 0, 1_000, 20.0)])[0]
    assert not slow_tail.meets(3.0)
    assert not errors.meets(3.0)


def test_table_has_a_line_per_cell_with_the_ratio() -> None:
    rows = report.rows(
        [_run("kiln", 32, 0, 35_000, 5.0, cpu=7.0), _run("mlflow", 32, 0, 10_000, 25.0, cpu=25.0)]
    )
    lines = report.table(rows, 3.0).splitlines()
    assert len(lines) == 3
    assert (
        lines[2]
        == "| 1 | 32 | 3,500 | 1,000 | 3.50x | 2.50 | 12.50 | 5.00 | 25.00 | 0.20 | 2.50 | 0/0 | yes |"
    )


def test_replace_section_appends_then_replaces_only_its_own_section() -> None:
    doc = "# Benchmarks\n\nIntro.\n"
    doc = report.replace_section(doc, "other", "other numbers")
    doc = report.replace_section(doc, "serve_bench", "first")
    doc = report.replace_section(doc, "serve_bench", "second")
    assert doc == (
        "# Benchmarks\n\nIntro.\n\n"
        "<!-- other:begin -->\nother numbers\n<!-- other:end -->\n\n"
        "<!-- serve_bench:begin -->\nsecond\n<!-- serve_bench:end -->\n"
    )


def test_replace_section_refuses_a_section_without_its_end_marker() -> None:
    with pytest.raises(ValueError, match="section 'serve_bench' has <!-- serve_bench:begin --> but no"):
        report.replace_section("<!-- serve_bench:begin -->\nold\n", "serve_bench", "new")
