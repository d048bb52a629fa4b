"""Explicit parsing of environment-variable strings (booleans, numbers, sizes, JSON objects)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from kiln.errors import UsageError

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def lookup(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    """The first of ``names`` that is set, as ``(name, value)``; kiln's own name comes first."""
    for name in names:
        value = environ.get(name)
        if value is not None:
            return name, value
    return None


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise UsageError(f"{name}={value!r} is not a boolean (expected one of true/false/1/0/yes/no)")


def parse_int(name: str, value: str, *, minimum: int | None = None) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise UsageError(f"{name}={value!r} is not a whole number") from None
    if minimum is not None and number < minimum:
        raise UsageError(f"{name}={value!r} must be at least {minimum}")
    return number


def parse_seconds(name: str, value: str) -> float:
    text = value.strip().lower().removesuffix("s")
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not a number of seconds (e.g. 60 or 2.5)") from None
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(f"{name}={value!r} must be a positive, finite number of seconds")
    return seconds


def parse_size(name: str, value: str) -> int:
    """Bytes from ``1048576``, ``100m``, ``100MB``, ``1.5GiB``; at least 1 byte."""
    match = _SIZE.match(value)
    if not match:
        raise UsageError(f"{name}={value!r} is not a size (expected bytes or e.g. 100m, 1g, 512k)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < 1:
        raise UsageError(f"{name}={value!r} must be at least 1 byte")
    return size


def parse_json_object(name: str, value: str) -> dict[str, Any]:
    """A JSON object (``{...}``), or a UsageError naming ``name`` and quoting the value."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name} is not valid JSON ({exc}): {value[:200]!r}") from exc
    if not isinstance(parsed, dict):
        raise UsageError(f"{name} must be a JSON object, got {type(parsed).__name__}: {value[:200]!r}")
    return parsed
