"""The host's conda configuration (``.condarc`` files and ``$CONDARC``), as far as fetching needs it.

Read, in conda's order, lowest priority first: ``/etc/conda/.condarc``, ``/etc/conda/condarc``,
``/etc/conda/condarc.d/*.yml``, ``$XDG_CONFIG_HOME/conda/.condarc``, ``~/.config/conda/.condarc``,
``~/.conda/.condarc``, ``~/.condarc``, then ``$CONDARC``. A later file's value for a key
replaces an earlier one's; mappings (``custom_channels``, ``mirrored_channels``,
``proxy_servers``) are merged key by key. The keys kiln uses:

``channels``           the channels when the environment file names none
``channel_alias``      the base URL a channel name is joined to (default conda.anaconda.org)
``default_channels``   what ``defaults`` stands for
``custom_channels``    ``{name: base URL}`` for names that live elsewhere than the alias
``mirrored_channels``  ``{name or URL: [mirror URL, ...]}``: fetch from the mirrors instead
``proxy_servers``      ``{http: URL, https: URL}``
``ssl_verify``         true (the system CA bundle), false, or the path of a CA bundle

Credentials may be in any of these URLs (``https://user:password@host/...`` or an
anaconda.org token path ``https://host/t/<token>/...``); see ``kiln.env.conda.access``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kiln.env.redact import redact
from kiln.errors import DependencyError

CONDARC_ENV = "CONDARC"
DEFAULT_CHANNEL_ALIAS = "https://conda.anaconda.org"
DEFAULT_CHANNELS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
_MERGED = ("custom_channels", "mirrored_channels", "proxy_servers")


@dataclass(frozen=True)
class CondaConfig:
    """The settings from the host's ``.condarc`` files that decide where packages come from."""

    channels: tuple[str, ...] = ()
    channel_alias: str = DEFAULT_CHANNEL_ALIAS
    default_channels: tuple[str, ...] = DEFAULT_CHANNELS
    custom_channels: Mapping[str, str] = field(default_factory=dict)
    mirrored_channels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    proxy_servers: Mapping[str, str] = field(default_factory=dict)
    ssl_verify: bool | str = True
    """True: the system CA bundle; False: no verification; a string: a CA bundle file."""
    files: tuple[str, ...] = ()
    """The files read, for messages."""

    def channel_urls(self, channel: str) -> tuple[str, ...]:
        """The URL(s) of a channel as written in an environment file (``defaults`` is several)."""
        channel = channel.strip().rstrip("/")
        if "://" in channel:
            return (channel,)
        if channel == "defaults":
            return tuple(url.rstrip("/") for url in self.default_channels)
        first = channel.split("/", 1)[0]
        base = self.custom_channels.get(first, self.channel_alias)
        return (f"{base.rstrip('/')}/{channel}",)

    def mirrors(self, channel: str, url: str) -> tuple[str, ...]:
        """The mirrors configured for a channel, whether .condarc keys it by name or by URL."""
        url = url.rstrip("/")
        for key, mirrors in self.mirrored_channels.items():
            if key in (channel, url) or url in self.channel_urls(key):
                return mirrors
        return ()

    @property
    def ca_bundle(self) -> str | None:
        """The CA bundle file to trust (None when verification is off)."""
        if self.ssl_verify is False:
            return None
        if isinstance(self.ssl_verify, str):
            return self.ssl_verify
        return SYSTEM_CA_BUNDLE if Path(SYSTEM_CA_BUNDLE).is_file() else None


def condarc_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The ``.condarc`` files conda would read, lowest priority first (existing ones only)."""
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    xdg = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    candidates = [Path("/etc/conda/.condarc"), Path("/etc/conda/condarc")]
    candidates += sorted(Path("/etc/conda/condarc.d").glob("*.yml"))
    candidates += [xdg / "conda" / ".condarc", home / ".config" / "conda" / ".condarc"]
    candidates += [home / ".conda" / ".condarc", home / ".condarc"]
    if env.get(CONDARC_ENV):
        candidates.append(Path(env[CONDARC_ENV]))
    seen: list[Path] = []
    for path in candidates:
        if path.is_file() and path not in seen:
            seen.append(path)
    return seen


def read_condarc(environ: Mapping[str, str] | None = None) -> CondaConfig:
    """The merged configuration of the host's ``.condarc`` files (defaults when there are none)."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONDARC_ENV)
    if explicit and not Path(explicit).is_file():
        raise DependencyError(
            f"${CONDARC_ENV} names {explicit!r}, which is not a file",
            hint=f"point {CONDARC_ENV} at your .condarc or unset it",
        )
    merged: dict[str, Any] = {}
    paths = condarc_paths(env)
    for path in paths:
        for key, value in _load(path).items():
            if key in _MERGED and isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return _config(merged, tuple(str(path) for path in paths))


def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DependencyError(
            f"cannot read the conda configuration {str(path)!r}: {redact(str(exc))}"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DependencyError(f"the conda configuration {str(path)!r} is not a mapping")
    return data


def _config(data: dict[str, Any], files: tuple[str, ...]) -> CondaConfig:
    where = ", ".join(files) or ".condarc"
    ssl_verify = data.get("ssl_verify", True)
    if isinstance(ssl_verify, str) and ssl_verify.lower() in ("true", "false"):
        ssl_verify = ssl_verify.lower() == "true"
    if isinstance(ssl_verify, str) and not Path(ssl_verify).expanduser().is_file():
        raise DependencyError(
            f"ssl_verify in {where} names the CA bundle {ssl_verify!r}, which is not a file",
            hint="set ssl_verify to the path of a PEM file with your CA certificates, or to true",
        )
    return CondaConfig(
        channels=tuple(_strings(data.get("channels"), "channels", where)),
        channel_alias=str(data.get("channel_alias") or DEFAULT_CHANNEL_ALIAS).rstrip("/"),
        default_channels=tuple(_strings(data.get("default_channels"), "default_channels", where))
        or DEFAULT_CHANNELS,
        custom_channels={str(k): str(v) for k, v in _mapping(data, "custom_channels", where).items()},
        mirrored_channels={
            str(k): tuple(_strings(v if isinstance(v, list) else [v], "mirrored_channels", where))
            for k, v in _mapping(data, "mirrored_channels", where).items()
        },
        proxy_servers={str(k): str(v) for k, v in _mapping(data, "proxy_servers", where).items()},
        ssl_verify=str(Path(ssl_verify).expanduser()) if isinstance(ssl_verify, str) else bool(ssl_verify),
        files=files,
    )


def _mapping(data: dict[str, Any], key: str, where: str) -> dict[Any, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise DependencyError(f"{key} in {where} must be a mapping, got {redact(repr(value))}")
    return value


def _strings(value: object, key: str, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DependencyError(f"{key} in {where} must be a list of strings, got {redact(repr(value))}")
    return [item.strip() for item in value if item.strip()]
