"""pytest fixtures for the test conda channel; import them in a conftest.py::

    from tests.conda_channel.fixtures import conda_channel, conda_channel_dir  # noqa: F401

``conda_channel_dir``: the built, indexed channel directory (session; the first session on a
machine builds it, which compiles CPython: minutes, so a test that may be first needs
``@pytest.mark.timeout(1800)``). ``conda_channel``: a running ``ChannelServer`` over it
(session), with ``.url``, ``.basic_auth_url``, ``.token_url``, ``.private_url``, ``.requests``
and ``.tampered``. Tests that change ``tampered`` or read ``requests`` should reset them
(``conda_channel.tampered.clear()``, ``conda_channel.requests.clear()``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conda_channel.serve import ChannelServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def conda_channel_dir() -> Path:
    """Built in a child process (``python -m tests.conda_channel.build``): the indexer's and the
    compressor's threads stay out of the test session, and its progress reaches the CI log
    (stderr is not captured)."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.conda_channel.build"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=sys.__stderr__,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"building the test conda channel failed (exit {result.returncode}); its stderr is above")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def conda_channel(conda_channel_dir: Path) -> Iterator[ChannelServer]:
    with ChannelServer(conda_channel_dir) as server:
        yield server
