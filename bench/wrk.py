"""Drive an HTTP endpoint with Debian's ``wrk`` and read back what it measured.

The Lua script POSTs one fixed body and, when the run is done, prints one line
``WRK_RESULT {json}`` with the counts and latency percentiles, so nothing depends
on parsing wrk's human-readable table.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

RESULT_TAG = "WRK_RESULT "

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('%s{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (ms) and error counts."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def lua_script(body: str, content_type: str = "application/json") -> str:
    """A wrk script that POSTs ``body`` with ``content_type`` and reports as ``WRK_RESULT``."""
    if "]==]" in body:
        raise ValueError("body contains ']==]', which would end the Lua long string")
    head = f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\nwrk.body = [==[{body}]==]\n'
    return head + _DONE % RESULT_TAG


def parse(output: str) -> WrkResult:
    """Read the ``WRK_RESULT`` line out of wrk's output."""
    for line in output.splitlines():
        if line.startswith(RESULT_TAG):
            raw = json.loads(line[len(RESULT_TAG) :])
            return WrkResult(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                p50_ms=raw["p50_us"] / 1e3,
                p99_ms=raw["p99_us"] / 1e3,
                non_2xx=raw["status"],
                socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
            )
    raise ValueError(f"no {RESULT_TAG.strip()} line in wrk output:\n{output}")


def run(url: str, script: Path, connections: int, seconds: float, threads: int = 1) -> WrkResult:
    """Run wrk against ``url`` for ``seconds`` with ``connections`` keep-alive connections."""
    cmd = [
        "wrk",
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        "--latency",
        f"--script={script}",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr or done.stdout}")
    return parse(done.stdout)


def version() -> str:
    """wrk's version line (``wrk -v`` prints it and exits 1)."""
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()[0]
    return first.split(" Copyright")[0].strip()
