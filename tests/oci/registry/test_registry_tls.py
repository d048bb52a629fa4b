"""HTTPS and insecure registries on a non-loopback address: CA bundles, KILN_INSECURE_REGISTRIES."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.oci.registry.conftest import repo
from tests.oci.registry.images import assemble, layer
from tests.oci.registry.servers import make_tls
from tests.registry_support import Registry, started_registry

from kiln.errors import RegistryError
from kiln.oci.registry import RegistryClient, fetch_base, push_image

pytestmark = pytest.mark.usefixtures("no_docker_config")


def _own_address() -> str:
    """An IPv4 address of this machine that is not loopback (kiln uses HTTPS there by default)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # no packet is sent: this only picks the outgoing address
            address = str(probe.getsockname()[0])
        except OSError:
            address = ""
    if not address or address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address to serve a registry on")
    return address


@pytest.fixture(scope="module")
def https_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("https-registry")
    address = _own_address()
    with started_registry(root, host=address, tls=make_tls(root / "tls", address)) as running:
        yield running


@pytest.fixture(scope="module")
def http_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with started_registry(tmp_path_factory.mktemp("http-registry"), host=_own_address()) as running:
        yield running


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine's own address is never reached through a proxy from the environment."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("KILN_INSECURE_REGISTRIES", raising=False)


def test_https_with_the_ca_in_ssl_cert_file(
    https_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert https_registry.tls is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(https_registry.tls.ca))
    image = assemble(tmp_path, [layer(tmp_path, {"f": os.urandom(1000)})])
    name = repo("https")

    push_image(image, f"{https_registry.host}/{name}:1")

    with RegistryClient(https_registry.host) as client:
        assert client.base_url == f"https://{https_registry.host}"
        assert client.get_manifest(name, "1").digest == image.digest


def test_an_untrusted_certificate_says_where_to_put_the_ca(
    https_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(RegistryError) as caught:
        push_image(assemble(tmp_path, [layer(tmp_path, {"f": b"1"})]), f"{https_registry.host}/{repo()}:1")
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    assert caught.value.hint is not None
    assert caught.value.hint.startswith("the registry's TLS certificate is not trusted: point SSL_CERT_FILE")


def test_a_plain_http_registry_needs_kiln_insecure_registries(
    http_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = assemble(tmp_path, [layer(tmp_path, {"f": os.urandom(1000)})])
    target = f"{http_registry.host}/{repo('insecure')}:1"
    with pytest.raises(RegistryError) as caught:
        push_image(image, target)
    assert caught.value.message.startswith(f"registry {http_registry.host} (https://{http_registry.host}): ")
    assert "KILN_INSECURE_REGISTRIES" in (caught.value.hint or "")

    monkeypatch.setenv("KILN_INSECURE_REGISTRIES", f"registry.example.com, {http_registry.host}")
    report = push_image(image, target)

    assert len(report.digests("uploaded")) == 2


def test_an_unknown_registry_host_is_named_with_a_hint_not_about_plain_http() -> None:
    # .invalid never resolves (RFC 2606): the failure is the name, not TLS or plain HTTP.
    with pytest.raises(RegistryError) as caught:
        fetch_base("registry.invalid/team/base:1", "linux/amd64")
    assert "registry.invalid" in caught.value.message
    hint = caught.value.hint or ""
    assert "could not be resolved" in hint
    assert "docker-archive:" in hint
    assert "KILN_INSECURE_REGISTRIES" not in hint
