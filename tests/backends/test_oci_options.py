"""The OCI backend's options: outputs, pushes, SOURCE_DATE_EPOCH; errors come before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kiln import api
from kiln.backends.builders import BUILDERS, NoOptions, check_options, get_builder
from kiln.backends.oci import OciBuilder, source_date_epoch
from kiln.backends.publish import (
    DockerArchive,
    DockerLoad,
    LocalLayers,
    OciLayout,
    Registry,
    Tee,
    parse_output,
    publisher_for,
)
from kiln.errors import UsageError
from kiln.oci.blobstore import BlobStore
from kiln.oci.transports import Location

NO_ENGINE = {"KILN_DOCKER": "false", "PATH": "/usr/bin:/bin"}
"""A "docker" client that answers nothing: /bin/false exits 1 for ``false version``."""


def test_outputs_parse() -> None:
    assert parse_output("docker") == DockerLoad()
    assert parse_output("docker-archive:out/image.tar") == DockerArchive(
        Location("docker-archive", Path("out/image.tar").absolute())
    )
    assert parse_output("oci:out/layout") == OciLayout(Location("oci", Path("out/layout").absolute()))
    assert parse_output("oci:out/layout:v1") == OciLayout(
        Location("oci", Path("out/layout").absolute(), "v1")
    )
    assert str(Location("oci", Path("/x"), "v1")) == "oci:/x:v1"


@pytest.mark.parametrize(
    "text", ["dockr", "tar:image.tar", "oci:", "docker-archive:", "registry.example.com/x:1"]
)
def test_unknown_outputs_name_the_forms(text: str) -> None:
    with pytest.raises(UsageError, match="oci:DIR\\[:TAG\\], docker-archive:FILE or docker"):
        parse_output(text)


def test_targets_are_checked_and_default_to_docker_only_with_an_engine(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    local = LocalLayers(Tee((OciLayout(Location("oci", Path("/tmp/x"))),)), store)
    push = Registry("127.0.0.1:5000/team/model:1")
    assert publisher_for(["oci:/tmp/x"], [push.reference], store=store) == Tee((local, push))
    assert publisher_for([], [push.reference], store=store) == Tee((push,))
    assert publisher_for([], [], store=store) == Tee((LocalLayers(Tee((DockerLoad(),)), store),))
    with pytest.raises(UsageError, match=r"invalid image reference 'Not A Reference!'.* must be lowercase"):
        publisher_for([], ["Not A Reference!"], store=store)
    with pytest.raises(
        UsageError, match="--backend oci needs --output or --push when no Docker engine answers"
    ):
        publisher_for([], [], store=store, environ=NO_ENGINE)


def test_each_backend_refuses_the_others_options() -> None:
    with pytest.raises(UsageError, match="--build-arg \\(A\\) applies to Dockerfile builds"):
        check_options("oci", NoOptions(build_args={"A": "1"}))
    check_options("docker", NoOptions(push=("127.0.0.1:5000/x:1",)))  # docker save + kiln's client
    with pytest.raises(UsageError, match=r"--platform linux/amd64,linux/arm64 needs --backend oci"):
        check_options("docker", NoOptions(platform="linux/amd64,linux/arm64"))


def test_a_multi_platform_build_refuses_outputs_that_hold_one_platform(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    both = ("linux/amd64", "linux/arm64")
    with pytest.raises(
        UsageError, match=r"docker-archive.*cannot hold a build for linux/amd64, linux/arm64"
    ) as caught:
        publisher_for([f"docker-archive:{tmp_path}/x.tar"], [], store=store, platforms=both)
    assert "{platform}" in (caught.value.hint or "")
    publisher_for(
        [f"docker-archive:{tmp_path}/x-{{platform}}.tar", f"oci:{tmp_path}/l"],
        [],
        store=store,
        platforms=both,
    )
    with pytest.raises(UsageError, match=r"--output docker loads the host's platform \(linux/amd64\)"):
        publisher_for(["docker"], [], store=store, platforms=("linux/arm64", "linux/arm/v7"))


def test_platforms_are_parsed_once() -> None:
    from kiln.api.options import BuildOptions

    options = BuildOptions(name="x", platform=" linux/amd64 , linux/arm64")
    assert options.platform == "linux/amd64,linux/arm64"
    assert options.platforms == ("linux/amd64", "linux/arm64")
    assert BuildOptions(name="x").platforms == (None,)
    with pytest.raises(UsageError, match="'linux' is not OS/ARCH"):
        BuildOptions(name="x", platform="linux")
    with pytest.raises(UsageError, match="names linux/arm64 twice"):
        BuildOptions(name="x", platform="linux/arm64,linux/arm64")


def test_source_date_epoch() -> None:
    assert source_date_epoch({}) == 0
    assert source_date_epoch({"SOURCE_DATE_EPOCH": "1700000000"}) == 1700000000
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH='yesterday' is not a whole number"):
        source_date_epoch({"SOURCE_DATE_EPOCH": "yesterday"})


def test_the_backend_is_registered() -> None:
    assert set(BUILDERS) == {"docker", "oci"}
    assert isinstance(get_builder("oci"), OciBuilder)
    with pytest.raises(UsageError, match="unknown backend 'podman' \\(expected one of docker, oci\\)"):
        get_builder("podman")


def test_several_platforms_need_the_oci_backend(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--platform linux/amd64,linux/arm64 needs --backend oci"):
        api.build(tmp_path / "no-model", name="x:1", platform="linux/amd64,linux/arm64")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "kiln", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--output", "tarball:x.tar"], None, "--output 'tarball:x.tar' is not a known output"),
        ([], NO_ENGINE, "--backend oci needs --output or --push when no Docker engine answers"),
        (["--push", "Bad Reference"], None, "Bad Reference"),
        (
            ["--output", "docker-archive:x.tar", "--build-arg", "A=1"],
            None,
            "--build-arg (A) applies to Dockerfile",
        ),
        (["--output", "docker-archive:x.tar"], {"SOURCE_DATE_EPOCH": "soon"}, "SOURCE_DATE_EPOCH='soon'"),
        (
            ["--output", "docker-archive:x.tar", "--smoke-test"],
            None,
            "--smoke-test with --backend oci needs --output docker",
        ),
    ],
)
def test_cli_errors_come_before_any_work(
    tmp_path: Path, args: list[str], env: dict[str, str] | None, message: str
) -> None:
    # The model does not exist: an error about it would mean the options were checked too late.
    result = _cli("build", "--backend", "oci", "-m", str(tmp_path / "missing"), "-n", "x:1", *args, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and message in result.stderr, result.stderr


def test_cli_refuses_several_platforms_with_the_docker_backend(tmp_path: Path) -> None:
    result = _cli(
        "build", "-m", str(tmp_path / "missing"), "-n", "x:1", "--push", "127.0.0.1:5000/x:1",
        "--platform", "linux/amd64,linux/arm64",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--platform linux/amd64,linux/arm64 needs --backend oci" in result.stderr
