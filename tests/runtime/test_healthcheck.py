"""The HEALTHCHECK's client reaches the server where KILN_HOST put it."""

from __future__ import annotations

import pytest

from kiln.runtime.healthcheck import probe_host


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "127.0.0.1"),  # the image's default, every interface
        ({"KILN_HOST": "0.0.0.0"}, "127.0.0.1"),
        ({"KILN_HOST": "::"}, "::1"),
        ({"KILN_HOST": "[::]"}, "::1"),
        ({"KILN_HOST": "10.1.2.3"}, "10.1.2.3"),  # one address only: the loopback would be refused
        ({"MLFLOW_HOST": "127.0.0.2"}, "127.0.0.2"),
        ({"KILN_HOST": "127.0.0.3", "MLFLOW_HOST": "127.0.0.2"}, "127.0.0.3"),
    ],
)
def test_probe_host(environ: dict[str, str], expected: str) -> None:
    assert probe_host(environ) == expected
