"""The conda solve's failures as DependencyErrors that name the channel, the package or the conflict.

Every text that came from rattler passes ``redact_channel_text`` first: rattler's messages
may quote a URL with the ``/t/<token>/`` path its authentication added, or a user:password.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from kiln.env.conda.access import Channel, Channels
from kiln.env.redact import redact
from kiln.errors import DependencyError

_TOKEN_PATH = re.compile(r"/t/[^/\s'\"]+/")
_MIRROR_HINT = (
    "check the channel URL, your network, and the host's .condarc (channel_alias, custom_channels, "
    "mirrored_channels, proxy_servers, ssl_verify); kiln fetches with the host's configuration"
)


def redact_channel_text(text: str) -> str:
    """``text`` without user:password in URLs and without anaconda.org ``/t/<token>/`` paths."""
    return _TOKEN_PATH.sub("/t/****/", redact(text))


def unreachable_channel(
    channel: Channel | None, exc: BaseException, channels: Channels | None = None
) -> DependencyError:
    """A channel (or, when rattler does not say which, one of ``channels``) could not be read."""
    reason = _reason(exc)
    where = channel.url if channel else (channels.describe() if channels else "the conda channels")
    if channel and channel.mirrors:
        where += f" (through its mirrors {', '.join(channel.mirrors)})"
    return DependencyError(f"cannot read the conda channel {where}: {reason}", hint=_MIRROR_HINT)


def missing_packages(specs: Sequence[str], channels: Channels, subdir: str) -> DependencyError:
    """No channel has any build of these specs' packages for ``subdir`` or ``noarch``."""
    what = ", ".join(repr(spec) for spec in specs)
    noun = "package" if len(specs) == 1 else "packages"
    return DependencyError(
        f"conda {noun} {what} not found in the channels {channels.describe()} (for {subdir} or noarch)",
        hint="check the name, add the channel that has it to conda.yaml's 'channels', or move it to "
        "the 'pip:' section if it is a PyPI package",
    )


def explain_solve_failure(
    exc: BaseException, specs: Sequence[str], channels: Channels, subdir: str
) -> DependencyError:
    """The specs have no solution; rattler's explanation goes in the hint."""
    return DependencyError(
        f"the conda specs cannot be satisfied for {subdir} from {channels.describe()}: "
        + ", ".join(repr(spec) for spec in specs),
        hint="rattler says: " + _explanation(exc) + "\n  relax the pins in conda.yaml",
    )


def _reason(exc: BaseException) -> str:
    text = redact_channel_text(_full_text(exc))
    for pattern, reason in (
        (r"\b401\b|Unauthorized", "HTTP 401 Unauthorized: missing or wrong credentials"),
        (r"\b403\b|Forbidden", "HTTP 403 Forbidden: the credentials are not allowed to read it"),
        (r"\b404\b|Not Found", "HTTP 404 Not Found: no channel at that URL (or no repodata.json)"),
        (r"[Cc]onnection refused", "connection refused"),
        (r"dns error|failed to lookup address|Name or service not known", "the host name does not resolve"),
        (r"certificate|tls|TLS|ssl|SSL", "TLS verification failed"),
        (r"timed out|[Tt]imeout", "timed out"),
    ):
        if re.search(pattern, text):
            return reason
    return " ".join(text.split())[:300]


def _explanation(exc: BaseException) -> str:
    lines = [line.rstrip() for line in redact_channel_text(_full_text(exc)).splitlines() if line.strip()]
    return "\n    ".join(lines[:30])


def _full_text(exc: BaseException) -> str:
    parts = [str(exc)]
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(parts) < 5:
        parts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    return "\n".join(parts)
