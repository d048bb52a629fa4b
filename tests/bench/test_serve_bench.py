"""bench/serve_bench.py end to end, briefly: kiln (with and without batching) and MLflow up, same
answers, one measured cell written (MLServer and BentoML are left out here: their venvs take minutes)."""

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
    command += ["--servers", "kiln", "kiln-batch", "mlflow"]
    command += ["--output", str(output), "--raw-dir", str(tmp_path)]

    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "bench: all answer 200 with the predictions [0, 1, 2]" in done.stdout
    written = output.read_text()
    assert written.startswith("# Benchmarks\n\nKept as is.\n\n<!-- serve_peers:begin -->\n")
    assert written.rstrip().endswith("<!-- serve_peers:end -->")
    rows = [line for line in written.splitlines() if line.startswith("| 1 | 2 |")]
    cells = {row.split("|")[3].strip(): [c.strip() for c in row.strip("|").split("|")] for row in rows}
    assert set(cells) == {"kiln", "kiln, batching", "MLflow"}
    for server, row in cells.items():
        assert float(row[3].replace(",", "")) > 0, server  # req/s
        assert row[8] == "0", server  # no errors
    assert cells["MLflow"][4] == "1.00x"
    assert "kiln without batching ahead of every peer in req/s" in written
    assert "Server: nginx" in written  # kiln was measured behind nginx
    assert len(list(tmp_path.glob("serve_bench-*.json"))) == 1
