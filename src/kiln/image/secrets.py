"""Keep credentials out of images: scrub index options from locks, refuse any credential that remains.

Index URLs (often carrying ``user:token@``) are used on the host to fetch wheels;
the image installs offline with ``--no-index``, so nothing that names an index
needs to reach the build context.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping

from kiln.env.redact import has_credentials, redact
from kiln.errors import BuildError
from kiln.model.uri import strip_credentials

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
    "MLFLOW_TRACKING_URI",
)
_SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET|_KEY)$", re.IGNORECASE)
_MIN_SECRET = 6


def scrub_lock(text: str) -> str:
    """A lock without index/find-links options (the image installs with ``--no-index``)."""
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        option = stripped.split("=", 1)[0].split(None, 1)[0] if stripped else ""
        if option in _INDEX_OPTIONS:
            continue
        kept.append(strip_credentials(line))
    return "\n".join(kept) + "\n"


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Credential strings in the host's environment that must never reach an image."""
    environ = os.environ if environ is None else environ
    values: list[str] = []
    for name, value in environ.items():
        if name in _CREDENTIAL_VARIABLES:
            for url in value.split():
                parts = urllib.parse.urlsplit(url)
                values.extend(p for p in (parts.username, parts.password) if p and len(p) >= _MIN_SECRET)
        elif _SECRET_NAME.search(name) and len(value) >= 8:
            values.append(value)
    return values


def check_no_secrets(
    files: Iterable[tuple[str, str]],
    dockerfile: str,
    environ: Mapping[str, str] | None = None,
) -> None:
    """BuildError when a lock or conda file (``files``: name, text) holds a URL with credentials,
    or when any of them or the Dockerfile holds the value of a credential from the host."""
    secrets = secret_values(environ)
    files = list(files)
    for name, text in files:
        if has_credentials(text):
            line = next(line for line in text.splitlines() if has_credentials(line))
            raise BuildError(
                f"{name} contains a URL with credentials ({redact(line.strip())}); "
                "kiln refuses to put credentials into an image",
                hint="pass index credentials through the environment or a netrc file on the host only",
            )
    for name, text in [*files, ("the Dockerfile", dockerfile)]:
        if any(secret in text for secret in secrets):
            raise BuildError(
                f"{name} contains the value of a credential from the host environment; "
                "kiln refuses to put credentials into an image"
            )
