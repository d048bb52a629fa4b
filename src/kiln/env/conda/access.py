"""How rattler reaches the channels: credentials taken out of URLs, the host's .condarc applied.

A channel URL may carry credentials (``https://user:password@host/...`` or an anaconda.org
token path ``https://host/t/<token>/...``). kiln takes them out: the channel is used, locked
and shown by its bare URL, and the credentials go to rattler through an authentication file
(``{host: {"BasicHTTP": ...} | {"CondaToken": ...}}``) in a private temporary directory that
lives only while the client does. Mirrors, proxies and TLS verification from ``.condarc``
become a rattler ``Config``. Nothing here writes a credential anywhere a build can see it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from kiln.env.conda.condarc import CondaConfig
from kiln.errors import DependencyError

_TOKEN_PATH = re.compile(r"^/t/(?P<token>[^/]+)(?P<rest>/.*)?$")


@dataclass(frozen=True)
class Channel:
    """One channel as kiln uses it."""

    name: str
    """As the user wrote it, credentials removed (``conda-forge``, ``https://host/channel``)."""
    url: str
    """The bare URL: no user, password or token."""
    mirrors: tuple[str, ...] = ()
    """Bare mirror URLs from ``mirrored_channels``."""


@dataclass(frozen=True)
class Credential:
    host: str
    authentication: dict[str, Any]


@dataclass(frozen=True)
class Channels:
    """The channels to solve against, and the credentials that open them."""

    channels: tuple[Channel, ...]
    credentials: tuple[Credential, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(channel.url for channel in self.channels)

    def describe(self) -> str:
        return ", ".join(channel.url for channel in self.channels) or "(no channels)"


def split_credentials(url: str) -> tuple[str, Credential | None]:
    """``url`` without credentials, and the credential it carried (basic auth or a conda token)."""
    parts = urlsplit(url.strip().rstrip("/"))
    host = parts.hostname or ""
    netloc = parts.netloc.rpartition("@")[2]
    credential = None
    if parts.username is not None:
        if parts.password is None:  # https://<token>@host: a bearer token, as conda accepts it
            credential = Credential(host, {"BearerToken": unquote(parts.username)})
        else:
            auth = {"username": unquote(parts.username), "password": unquote(parts.password)}
            credential = Credential(host, {"BasicHTTP": auth})
    path = parts.path
    token = _TOKEN_PATH.match(path)
    if token:
        credential = Credential(host, {"CondaToken": token.group("token")})
        path = token.group("rest") or ""
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment)), credential


def resolve_channels(names: Sequence[str], config: CondaConfig) -> Channels:
    """The environment's channels (or .condarc's when it names none) as bare URLs + credentials."""
    wanted = list(names) or list(config.channels)
    if not wanted:
        raise DependencyError(
            "the conda environment names no channels and the host's .condarc sets none",
            hint="add 'channels: [<your channel>]' to conda.yaml or 'channels:' to ~/.condarc",
        )
    channels: list[Channel] = []
    credentials: dict[str, Credential] = {}
    for name in wanted:
        bare_name, _ = split_credentials(name) if "://" in name else (name, None)
        for url in config.channel_urls(name):
            bare, credential = split_credentials(url)
            if credential is not None:
                credentials[credential.host] = credential
            mirrors: list[str] = []
            for mirror in config.mirrors(name, url) or config.mirrors(bare_name, bare):
                bare_mirror, mirror_credential = split_credentials(mirror)
                mirrors.append(bare_mirror)
                if mirror_credential is not None:
                    credentials[mirror_credential.host] = mirror_credential
            if all(channel.url != bare for channel in channels):
                channels.append(Channel(bare_name, bare, tuple(mirrors)))
    return Channels(tuple(channels), tuple(credentials.values()))


@contextmanager
def rattler_client(channels: Channels, config: CondaConfig) -> Iterator[tuple[Any, Any]]:
    """``(rattler.Client, rattler.Config)`` for these channels under the host's configuration."""
    rattler = import_rattler()
    with tempfile.TemporaryDirectory(prefix="kiln-conda-auth-") as private:
        os.chmod(private, 0o700)
        auth_file = Path(private) / "credentials.json"
        stored = {credential.host: credential.authentication for credential in channels.credentials}
        descriptor = os.open(auth_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(stored, handle)
        toml = _config_toml(channels, config, auth_file)
        rattler_config = rattler.Config.from_toml(toml)
        with _ca_bundle(config):
            client = rattler.Client.from_config(rattler_config)
        yield client, rattler_config


def import_rattler() -> Any:
    """The ``rattler`` module (py-rattler), or a DependencyError saying how to get it."""
    try:
        import rattler
    except ImportError as exc:  # pragma: no cover - py-rattler is a dependency on Python >= 3.10
        raise DependencyError(
            "--env-manager conda needs py-rattler, which is not installed",
            hint="pip install 'py-rattler>=0.28' (Python 3.10 or newer)",
        ) from exc
    return rattler


def _config_toml(channels: Channels, config: CondaConfig, auth_file: Path) -> str:
    lines = [
        f"authentication-override-file = {json.dumps(str(auth_file))}",
        f"tls-no-verify = {'true' if config.ssl_verify is False else 'false'}",
        'tls-root-certs = "system"',
        # Copies, not links into rattler's cache: the environment becomes an image layer.
        "allow-hard-links = false",
        "allow-symbolic-links = false",
        "allow-ref-links = false",
        'run-post-link-scripts = "false"',
    ]
    mirrors = {channel.url: list(channel.mirrors) for channel in channels.channels if channel.mirrors}
    if mirrors:
        lines.append("[mirrors]")
        lines += [f"{json.dumps(url)} = {json.dumps(urls)}" for url, urls in mirrors.items()]
    proxies = {key: value for key, value in config.proxy_servers.items() if key in ("http", "https")}
    if proxies:
        lines.append("[proxy-config]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in sorted(proxies.items())]
    return "\n".join(lines) + "\n"


@contextmanager
def _ca_bundle(config: CondaConfig) -> Iterator[None]:
    """rattler's "system" roots read ``SSL_CERT_FILE`` when the client is made: point it at the
    CA bundle .condarc names (or the system bundle), for that moment only."""
    bundle = config.ca_bundle
    previous = os.environ.get("SSL_CERT_FILE")
    # A bundle .condarc names wins; the system bundle only fills in when none is set.
    if bundle is not None and (isinstance(config.ssl_verify, str) or previous is None):
        os.environ["SSL_CERT_FILE"] = bundle
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = previous
