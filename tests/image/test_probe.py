"""The base-image probe: parsing its output, its cache, and a real run against the test base image."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import BuildError
from kiln.image.probe import ProbeCache, parse_probe_output, probe_base_image

OUTPUT = """\
python=/usr/local/bin/python3
python3.11=/usr/bin/python3.11
nginx=
apt-get=/usr/bin/apt-get
glibc=2.36
os=debian:12
python_version=3.11.2
"""


def test_parse_probe_output() -> None:
    info = parse_probe_output("img", "sha256:1", "linux/amd64", OUTPUT)
    assert info.python == "/usr/local/bin/python3"
    assert info.python_minor == "3.11"
    assert info.pythons == {"3.11": "/usr/bin/python3.11"}
    assert (info.has_nginx, info.has_apt, info.glibc, info.pip_version) == (False, True, "2.36", None)
    assert info.interpreter_for("3.11") == "/usr/local/bin/python3"
    assert info.interpreter_for("3.12") is None


def test_probe_is_cached_by_image_id(tmp_path: Path) -> None:
    cache = ProbeCache(tmp_path)
    runs: list[str] = []

    def run(script: str) -> str:
        runs.append(script)
        return OUTPUT

    first = probe_base_image("a:1", image_id="sha256:1", os_arch="linux/amd64", run_script=run, cache=cache)
    again = probe_base_image("a:2", image_id="sha256:1", os_arch="linux/amd64", run_script=run, cache=cache)
    assert len(runs) == 1
    assert again.image == "a:2" and again.python == first.python


def test_an_image_with_nothing_kiln_can_use_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="found no Python, no apt-get and no glibc"):
        probe_base_image(
            "scratchy",
            image_id="sha256:2",
            os_arch="linux/amd64",
            run_script=lambda s: "",
            cache=ProbeCache(tmp_path),
        )


@pytest.mark.docker
def test_probe_the_test_base_image(docker_builder: object, tmp_path: Path) -> None:
    from kiln.backends.docker.builder import DockerBuilder

    assert isinstance(docker_builder, DockerBuilder)
    builder = DockerBuilder(docker_builder.cli, ProbeCache(tmp_path))
    info = builder.probe("kiln-test/python:3.11-slim")
    assert info.python == "/usr/local/bin/python3" and info.python_minor == "3.11"
    assert info.has_apt and not info.has_nginx
    assert info.glibc == "2.36" and info.os_arch == "linux/amd64"
    assert info.image_id.startswith("sha256:")
    # What the native-library check compares the wheels' needs with: the base's shared libraries
    # and its Debian packages (the slim base has libc6 and libstdc++6, not libgomp1).
    assert info.codename == "bookworm"
    assert "/usr/lib/x86_64-linux-gnu/libstdc++.so.6" in info.libraries
    assert not any("libgomp" in path for path in info.libraries)
    assert {"libc6", "libstdc++6", "apt"} <= set(info.packages) and "libgomp1" not in info.packages
