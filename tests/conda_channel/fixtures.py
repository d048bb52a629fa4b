"""pytest fixtures for the test conda channel; import them in a conftest.py::

    from tests.conda_channel.fixtures import conda_channel, conda_channel_dir  # noqa: F401

``conda_channel_dir``: the built, indexed channel directory (session; the first session on a
machine builds it, which compiles CPython: a few minutes). ``conda_channel``: a running
``ChannelServer`` over it (session), with ``.url``, ``.basic_auth_url``, ``.token_url``,
``.private_url``, ``.requests`` and ``.tampered``. Tests that change ``tampered`` or read
``requests`` should reset them (``conda_channel.tampered.clear()``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conda_channel.build import build_channel
from tests.conda_channel.serve import ChannelServer


@pytest.fixture(scope="session")
def conda_channel_dir() -> Path:
    return build_channel(report=_tell)


def _tell(line: str) -> None:
    """Past pytest's capture: a CI log should say why a test is silent for minutes."""
    stream = sys.__stderr__
    if stream is not None:
        stream.write(f"\n[conda channel] {line}\n")
        stream.flush()


@pytest.fixture(scope="session")
def conda_channel(conda_channel_dir: Path) -> Iterator[ChannelServer]:
    with ChannelServer(conda_channel_dir) as server:
        yield server
