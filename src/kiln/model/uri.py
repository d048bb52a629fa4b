"""Model URI strings: which ones are local paths, and how to show any URI without credentials."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from pathlib import Path

from kiln.errors import ModelURIError

# scheme://userinfo@host. Over HTTP any user-info is a login or a token; elsewhere only
# user:password is (wasbs://container@account/... names a container, not a secret).
_USERINFO = re.compile(r"(?P<scheme>(?P<name>[A-Za-z][A-Za-z0-9+.-]*)://)(?P<info>[^/@\s'\"]+)@")
_HTTP_SCHEMES = ("http", "https", "mlflow-artifacts")
# Query parameters that carry secrets in presigned or SAS URLs.
_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:[\w-]*(?:signature|token|sig|credential|key|password)[\w-]*)=)[^&\s'\"]+"
)


def strip_credentials(text: str) -> str:
    """``text`` with the user-info of every URL in it removed and secret query values masked."""
    return _SECRET_QUERY.sub(r"\1****", _USERINFO.sub(_without_userinfo, text))


def _without_userinfo(match: re.Match[str]) -> str:
    if match.group("name").lower() in _HTTP_SCHEMES or ":" in match.group("info"):
        return match.group("scheme")
    return match.group(0)


def scheme_of(model_uri: str) -> str:
    """The URI scheme in lower case, or ``""`` for a plain path (Windows drive letters included)."""
    scheme = urllib.parse.urlparse(model_uri).scheme.lower()
    return "" if len(scheme) <= 1 else scheme


def local_model_path(model_uri: str) -> Path | None:
    """The local directory a plain path or ``file:`` URI names, or None for any other URI.

    The path is made absolute but not required to exist: read_model_info says what is wrong.
    """
    scheme = scheme_of(model_uri)
    if scheme == "":
        return Path(model_uri).expanduser().absolute()
    if scheme != "file":
        return None
    parsed = urllib.parse.urlparse(model_uri)
    if parsed.netloc not in ("", "localhost"):
        raise ModelURIError(
            f"model URI {model_uri!r} names the host {parsed.netloc!r}; "
            "a file: URI must name a path on this machine (file:///path/to/model)"
        )
    return Path(urllib.request.url2pathname(parsed.path)).absolute()
