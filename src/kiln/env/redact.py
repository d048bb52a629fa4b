"""Remove credentials from URLs before text is shown, logged or written anywhere."""

from __future__ import annotations

import re

# scheme://user:password@host or scheme://token@host: everything between // and @ goes.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]+)@")


def redact(text: str) -> str:
    """``text`` with the user-info part of every URL replaced by ``****``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}****@", text)


def has_credentials(text: str) -> bool:
    """True when ``text`` holds a URL with a user name, password or token in it."""
    return _USERINFO.search(text) is not None
