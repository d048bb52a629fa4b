"""Keep credentials out of images: scrub index options from locks, redact URLs, refuse leaks.

Index URLs (often carrying ``user:token@``) are used on the host to fetch wheels;
the image installs offline with ``--no-index``, so nothing that names an index
needs to reach the build context.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from kiln.errors import BuildError

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@]+)@")
_INDEX_OPTIONS = (
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
    "--index",
    "--default-index",
)
_CREDENTIAL_VARIABLES = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "UV_DEFAULT_INDEX",
    "UV_FIND_LINKS",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
)
_SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET|_KEY)$", re.IGNORECASE)


def redact_url(text: str) -> str:
    """``https://user:token@host/x`` -> ``https://host/x`` wherever a URL appears in ``text``."""
    return _USERINFO.sub(lambda m: m.group("scheme"), text)


def scrub_lock(text: str) -> str:
    """A lock without index/find-links options (the image installs with ``--no-index``)."""
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        option = stripped.split("=", 1)[0].split(None, 1)[0] if stripped else ""
        if option in _INDEX_OPTIONS:
            continue
        kept.append(redact_url(line))
    return "\n".join(kept) + "\n"


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Credential strings from the host's environment that must never reach an image."""
    environ = os.environ if environ is None else environ
    values: list[str] = []
    for name, value in environ.items():
        if name in _CREDENTIAL_VARIABLES:
            for url in value.split():
                match = _USERINFO.search(url)
                if match:
                    values.extend(part for part in match.group("userinfo").split(":") if len(part) >= 6)
        elif _SECRET_NAME.search(name) and len(value) >= 8:
            values.append(value)
    return values


def check_no_secrets(
    named_texts: Iterable[tuple[str, str]], environ: Mapping[str, str] | None = None
) -> None:
    """BuildError when a text bound for the image holds URL credentials or a host secret's value."""
    secrets = secret_values(environ)
    for name, text in named_texts:
        match = _USERINFO.search(text)
        if match:
            raise BuildError(
                f"{name} contains a URL with credentials ({redact_url(match.group(0))}***@...); "
                "kiln refuses to put credentials into an image",
                hint="pass index credentials through the environment or a netrc file on the host only",
            )
        for secret in secrets:
            if secret in text:
                raise BuildError(
                    f"{name} contains the value of a credential from the host environment; "
                    "kiln refuses to put credentials into an image"
                )
