"""How kiln reaches a registry: plain HTTP or HTTPS, which CA bundle, which proxies.

Plain HTTP for loopback registries (``localhost``, 127.0.0.0/8, ``::1``), as Docker treats
them, and for hosts listed in ``KILN_INSECURE_REGISTRIES`` (comma-separated ``host`` or
``host:port``); HTTPS otherwise, verified against ``$SSL_CERT_FILE``, ``$REQUESTS_CA_BUNDLE``
or the system bundle. Proxies from the environment, except for loopback registries.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from pathlib import Path

import httpx

INSECURE_ENV = "KILN_INSECURE_REGISTRIES"
_SYSTEM_CA = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")


def host_only(registry: str) -> str:
    """``host`` of ``host[:port]`` (``::1`` of ``[::1]:5000``)."""
    if registry.startswith("["):
        return registry[1:].split("]", 1)[0]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (with or without a port)."""
    host = host_only(registry)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_registries(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The ``host[:port]`` entries of ``KILN_INSECURE_REGISTRIES``."""
    raw = (os.environ if env is None else env).get(INSECURE_ENV, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def uses_plain_http(registry: str, env: Mapping[str, str] | None = None) -> bool:
    """Loopback registries and those in ``KILN_INSECURE_REGISTRIES`` (by host or host:port) speak HTTP."""
    listed = insecure_registries(env)
    return is_loopback(registry) or registry in listed or host_only(registry) in listed


def ca_bundle(env: Mapping[str, str] | None = None) -> str | None:
    """The CA file to trust: ``$SSL_CERT_FILE``, ``$REQUESTS_CA_BUNDLE``, else the system bundle."""
    env = os.environ if env is None else env
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = env.get(name)
        if value and Path(value).is_file():
            return value
    return next((path for path in _SYSTEM_CA if Path(path).is_file()), None)


def http_client(registry: str, *, timeout: float, env: Mapping[str, str] | None = None) -> httpx.Client:
    """An httpx client for ``registry``: no automatic redirects (kiln follows them, see client.py)."""
    cafile = ca_bundle(env)
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=cafile) if cafile else True
    return httpx.Client(
        verify=verify,
        timeout=httpx.Timeout(timeout, connect=15.0),
        follow_redirects=False,
        # A loopback registry is never reached through a proxy from the environment.
        trust_env=not is_loopback(registry),
        headers={"User-Agent": "kiln"},
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
    )
