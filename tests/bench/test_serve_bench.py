"""bench/serve_bench.py end to end, briefly: both servers up, same answers, one measured cell written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (scripts/setup)")
def test_a_short_run_writes_its_section(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nKept as is.\n")
    command = [sys.executable, str(REPO / "bench" / "serve_bench.py"), "--workers", "1"]
    command += ["--connections", "2", "--duration", "1", "--warmup", "1", "--repeats", "1"]
    command += ["--output", str(output), "--raw-dir", str(tmp_path)]

    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'bench: both answer 200 {"predictions": [0, 1, 2]}' in done.stdout
    written = output.read_text()
    assert written.startswith("# Benchmarks\n\nKept as is.\n\n<!-- serve_bench:begin -->\n")
    assert written.rstrip().endswith("<!-- serve_bench:end -->")
    [row] = [line for line in written.splitlines() if line.startswith("| 1 | 2 |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert float(cells[2].replace(",", "")) > 0  # kiln req/s
    assert float(cells[3].replace(",", "")) > 0  # MLflow req/s
    assert cells[11] == "0/0"  # no errors from either server
    assert "Server: nginx" in written  # kiln was measured behind nginx
    assert len(list(tmp_path.glob("serve_bench-*.json"))) == 1
