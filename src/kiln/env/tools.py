"""Run the host's packaging tools (uv, pip) without a shell, and report their failures readably."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kiln.env.redact import redact
from kiln.errors import DependencyError

logger = logging.getLogger(__name__)

_TIMEOUT = 3600.0
# pip's chatter about where it looks: true on every run, so it crowds out the actual failure.
_PIP_NOISE = re.compile(
    r"^\s*(Looking in (indexes|links):|WARNING: Location '.*' is ignored|WARNING: Skipping page )"
)


def uv_binary() -> str:
    """The ``uv`` executable shipped by the ``uv`` Python package kiln depends on."""
    try:
        import uv
    except ImportError as exc:  # pragma: no cover - uv is a dependency of kiln
        raise DependencyError("the 'uv' package is not installed; reinstall kiln") from exc
    return str(uv.find_uv_bin())


def pip_command() -> list[str]:
    """``python -m pip`` for the interpreter running kiln (it reads the host's pip configuration)."""
    return [sys.executable, "-m", "pip"]


def run(
    command: Sequence[str],
    *,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; return it whatever its exit code. ``what`` names it in errors."""
    logger.debug("running %s", redact(" ".join(command)))
    environment = dict(os.environ if env is None else env)
    environment.setdefault("NO_COLOR", "1")
    environment.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    try:
        return subprocess.run(
            list(command),
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise DependencyError(f"cannot run {what}: {command[0]!r} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise DependencyError(f"{what} did not finish within {_TIMEOUT:.0f} s") from exc


def tail(text: str, lines: int = 15) -> str:
    """The last ``lines`` non-blank lines of a tool's output, pip's index chatter and credentials removed."""
    kept = [line for line in text.splitlines() if line.strip() and not _PIP_NOISE.match(line)]
    return redact("\n".join(kept[-lines:]))
