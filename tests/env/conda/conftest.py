"""The real conda channel (built once per machine, served on 127.0.0.1) for kiln.env.conda's tests."""

from __future__ import annotations

from tests.conda_channel.fixtures import conda_channel, conda_channel_dir

__all__ = ["conda_channel", "conda_channel_dir"]
