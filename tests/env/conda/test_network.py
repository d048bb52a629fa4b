"""The host's .condarc network settings reach rattler: proxy_servers, and ssl_verify with a CA bundle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.env.conda import CondaLock, fetch_conda_packages, lock_conda_environment, parse_conda_environment
from kiln.env.spec import TargetPlatform
from kiln.errors import DependencyError
from tests.conda_channel.proxy import ForwardProxy
from tests.conda_channel.serve import ChannelServer
from tests.oci.registry.servers import make_tls

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture
def condarc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "condarc"
    monkeypatch.setenv("CONDARC", str(path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    return path


@pytest.fixture(scope="module")
def https_channel(
    conda_channel_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ChannelServer, Path]]:
    """The channel over HTTPS with a certificate from a test CA; and that CA's PEM file."""
    tls = make_tls(tmp_path_factory.mktemp("tls"), "127.0.0.1")
    with ChannelServer(conda_channel_dir, tls=(tls.certificate, tls.key)) as server:
        yield server, tls.ca


def lock_six(channel: str, cache: Path) -> CondaLock:
    env = parse_conda_environment({"channels": [channel], "dependencies": ["python", "six"]}, origin="t")
    return lock_conda_environment(env, target=TargetPlatform("3.11"), cache_dir=cache)


def test_proxy_servers_carry_the_solve_and_the_fetch(
    conda_channel: ChannelServer, condarc: Path, tmp_path: Path
) -> None:
    upstream = conda_channel.url.removesuffix("/channel")
    with ForwardProxy(upstream) as proxy:
        condarc.write_text(f"proxy_servers:\n  http: {proxy.url}\n")
        locked = lock_six("http://conda.example.invalid/channel", tmp_path)
        fetch_conda_packages(locked, tmp_path / "pkgs", cache_dir=tmp_path)
    assert locked.channels == ("http://conda.example.invalid/channel",)
    assert "http://conda.example.invalid/channel/noarch/repodata.json" in proxy.requests
    six = locked.package("six")
    assert six is not None and six.url in proxy.requests


def test_ssl_verify_names_the_ca_bundle_that_trusts_a_private_channel(
    https_channel: tuple[ChannelServer, Path], condarc: Path, tmp_path: Path
) -> None:
    server, ca = https_channel
    condarc.write_text(f"ssl_verify: {ca}\n")
    locked = lock_six(server.url, tmp_path)
    assert locked.channels == (server.url,) and server.url.startswith("https://")
    fetched = fetch_conda_packages(locked, tmp_path / "pkgs", cache_dir=tmp_path)
    assert len(fetched.files) == len(locked.packages)


def test_without_the_ca_the_tls_failure_is_named(
    https_channel: tuple[ChannelServer, Path], condarc: Path, tmp_path: Path
) -> None:
    server, _ca = https_channel
    condarc.write_text("ssl_verify: true\n")  # the system bundle, which does not hold the test CA
    with pytest.raises(DependencyError) as caught:
        lock_six(server.url, tmp_path)
    assert f"cannot read the conda channel {server.url}: TLS verification failed" in caught.value.message


def test_ssl_verify_false_reads_the_channel_without_checking(
    https_channel: tuple[ChannelServer, Path], condarc: Path, tmp_path: Path
) -> None:
    condarc.write_text("ssl_verify: false\n")
    assert lock_six(https_channel[0].url, tmp_path).package("six") is not None
