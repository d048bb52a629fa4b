"""Large downloads: progress on a terminal (and only there), and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiln.model.resolve import resolve_model
from tests.model.conftest import BIG_MODEL_BYTES, Registry

pytestmark = pytest.mark.slow

RESOLVE = """
import sys
from kiln.model.resolve import resolve_model
with resolve_model(sys.argv[1], tracking_uri=sys.argv[2]) as resolved:
    print("resolved", resolved.path, flush=True)
"""


def _child_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ, TMPDIR=str(tmp), COLUMNS="120")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def test_progress_shows_on_a_terminal(registry: Registry, big_model_uri: str, tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", RESOLVE, big_model_uri, registry.server.url],
        stdout=subprocess.PIPE,
        stderr=secondary,
        env=_child_env(tmp_path),
    )
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    assert child.stdout is not None
    out = child.stdout.read().decode()
    assert child.wait(timeout=60) == 0, shown.decode(errors="replace")
    text = shown.decode(errors="replace")
    assert "resolved" in out
    assert f"Downloading {big_model_uri}" in text
    assert re.search(r"Downloading \S+ [1-9][0-9.]* MB", text)  # a byte count past the first MB


def test_no_progress_when_stderr_is_not_a_terminal(
    registry: Registry, big_model_uri: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with resolve_model(big_model_uri, tracking_uri=registry.server.url) as resolved:
        assert (resolved.path / "weights.bin").stat().st_size == BIG_MODEL_BYTES
    assert "Downloading" not in capfd.readouterr().err


def test_ctrl_c_during_the_download_leaves_no_files(
    registry: Registry, big_model_uri: str, tmp_path: Path
) -> None:
    # The child runs in short slices (SIGCONT, 2 ms, SIGSTOP) and its file is looked at while it is
    # frozen, so what is seen is what it has: Ctrl-C goes to a child frozen with part of the model.
    # A download that finished between two looks (a busy machine can give the child one long
    # slice) is not what this tests: the test tries again (ten times at most), and says what it saw.
    attempts = []
    for _attempt in range(10):
        child, out, err, seen = _interrupt_a_download(registry, big_model_uri, tmp_path)
        attempts.append(f"exit {child.returncode}, sizes seen frozen {seen[:3]}...{seen[-3:]} ({len(seen)})")
        if child.returncode != 0 or b"resolved" not in out:
            break
        shutil.rmtree(tmp_path)
        tmp_path.mkdir()
    assert child.returncode != 0, "; ".join(attempts) + f"; stderr: {err[-500:]!r}"
    assert b"KeyboardInterrupt" in err
    assert list(tmp_path.iterdir()) == []


def _interrupt_a_download(
    registry: Registry, uri: str, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], bytes, bytes, list[int]]:
    child = subprocess.Popen(
        [sys.executable, "-c", RESOLVE, uri, registry.server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(tmp_path),
        # As from a terminal: a non-interactive shell starts background jobs (CI's, for one) with
        # SIGINT ignored, children inherit that, and Python then never raises KeyboardInterrupt.
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while child.poll() is None and time.monotonic() < deadline:
            child.send_signal(signal.SIGSTOP)
            size = _downloaded(tmp_path)
            if size:
                seen.append(size)
            if 0 < size < BIG_MODEL_BYTES:
                child.send_signal(signal.SIGINT)  # delivered on SIGCONT, with the rest still to come
                child.send_signal(signal.SIGCONT)
                break
            child.send_signal(signal.SIGCONT)
            time.sleep(0.002 if size else 0.01)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child, out, err, seen


def _ctrl_c_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _downloaded(tmp: Path) -> int:
    """How much of the model's weights the child has written so far (0: none yet)."""
    for weights in tmp.glob("kiln-model-*/big_model/weights.bin"):
        try:
            return weights.stat().st_size
        except OSError:
            pass
    return 0
