"""The kinds of runtime settings (how a string from the environment becomes a value and back) and
the row type of the settings table; ``kiln.settings`` declares the table with them."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln import envvars
from kiln.errors import UsageError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ACCELERATORS = ("cpu", "cuda")
"""What the workers compute on; the builder's ``--accelerator`` writes the image's choice."""
PRELOAD_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Kind:
    """How a setting's text becomes its value (``parse(name, text)``; ``name`` is for messages) and back."""

    parse: Callable[[str, str], Any]
    format: Callable[[Any], str] = str
    metavar: str | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Setting:
    """One row of the table (the field's ``metadata["setting"]``, with the field's name and default)."""

    name: str
    default: Any
    env: tuple[str, ...]
    kind: Kind
    help: str
    """One sentence without its final period: ``kiln serve --help`` and the docs' table show it."""
    default_text: str | None = None
    """How the default is shown; None: derived from the default."""
    flags: tuple[str, ...] | None = None
    """The ``kiln serve`` spellings; None: ``--`` + the name with dashes; (): not an option."""
    negation: str | None = None
    """A boolean shown as ``--x/--no-x``; without it a boolean is a flag that turns it on."""
    metavar: str | None = None
    serve_default: Any = None
    """What ``kiln serve`` uses when neither its option nor an environment name is set; None: ``default``."""
    serve_default_text: str | None = None
    """How ``kiln serve --help`` shows its default, where it differs from the image's."""

    @property
    def options(self) -> tuple[str, ...]:
        if self.flags is None:
            return ("--" + self.name.replace("_", "-"),)
        return self.flags

    @property
    def is_flag(self) -> bool:
        """A boolean option that takes no value (``--expose-tracebacks``)."""
        return self.kind is BOOLEAN and self.negation is None

    def shown_default(self, *, serve: bool = False) -> str | None:
        """The default as --help (``serve``) or the docs show it; None where --help shows none."""
        if serve and self.serve_default_text is not None:
            return self.serve_default_text
        if self.default_text is not None:
            return self.default_text
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return None if self.default is None else str(self.default)

    def cli_help(self) -> str:
        shown = None if self.is_flag else self.shown_default(serve=True)
        return f"{self.help} [default: {shown}]." if shown is not None else f"{self.help}."


# --- kinds -------------------------------------------------------------------------------------


def _text(name: str, value: str) -> str:
    return value


def _optional_text(name: str, value: str) -> str | None:
    return value or None


def _host(name: str, value: str) -> str:
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    valid = bool(host) and not any(char.isspace() or char in "/[]" for char in host)
    if valid and ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            valid = False
    if not valid:
        raise UsageError(
            f"{name}={value!r} is not an address to listen on "
            "(expected an IP address or host name, e.g. 127.0.0.1, 0.0.0.0 or ::)"
        )
    return host


def _port(name: str, value: str) -> int:
    port = envvars.parse_int(name, value, minimum=1)
    if port > 65535:
        raise UsageError(f"{name}={value!r} is not a TCP port (expected 1-65535)")
    return port


def _workers(name: str, value: str) -> int | None:
    if value.strip().lower() in ("", "auto"):
        return None
    return envvars.parse_int(name, value, minimum=1)


def _count(name: str, value: str) -> int:
    return envvars.parse_int(name, value, minimum=0)


def _batch_size(name: str, value: str) -> int:
    return max(1, envvars.parse_int(name, value, minimum=0))  # 0 and 1 both mean no batching


def _milliseconds(name: str, value: str) -> float:
    text = value.strip().lower().removesuffix("ms")
    try:
        millis = float(text)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not a number of milliseconds (e.g. 2 or 0.5)") from None
    if not 0 <= millis <= 60_000:
        raise UsageError(f"{name}={value!r} must be between 0 and 60000 milliseconds")
    return millis


def _header_size(name: str, value: str) -> int:
    size = envvars.parse_size(name, value)
    if size < 1024:  # nginx needs a buffer at least its connection_pool_size (512 bytes)
        raise UsageError(f"{name}={value!r} is too small for a request head (expected at least 1k)")
    return size


def _log_level(name: str, value: str) -> str:
    level = value.strip().lower()
    if level not in LOG_LEVELS:
        raise UsageError(f"{name}={value!r} is not a log level (expected one of {', '.join(LOG_LEVELS)})")
    return level


def _choice(choices: tuple[str, ...], what: str) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        chosen = value.strip().lower()
        if chosen not in choices:
            raise UsageError(f"{name}={value!r} is not {what} (expected one of {', '.join(choices)})")
        return chosen

    return parse


def _json_object(name: str, value: str) -> Mapping[str, Any] | None:
    if not value.strip():
        return None
    return envvars.parse_json_object(name, value)


def _flag(value: bool) -> str:
    return "true" if value else "false"


TEXT = Kind(_text)
OPTIONAL_TEXT = Kind(_optional_text)
ADDRESS = Kind(_host, metavar="HOST")
PORT = Kind(_port, metavar="PORT")
WORKERS = Kind(_workers, metavar="N")
COUNT = Kind(_count, metavar="N")
BATCH_SIZE = Kind(_batch_size, metavar="N")
MILLISECONDS = Kind(_milliseconds, repr, "MS")
SECONDS = Kind(envvars.parse_seconds, repr, "SECONDS")
SIZE = Kind(envvars.parse_size, metavar="SIZE")
HEADER_SIZE = Kind(_header_size, metavar="SIZE")
BOOLEAN = Kind(envvars.parse_bool, _flag)
LOG_LEVEL = Kind(_log_level, choices=LOG_LEVELS)
ACCELERATOR = Kind(_choice(ACCELERATORS, "an accelerator"), choices=ACCELERATORS)
PRELOAD_MODE = Kind(_choice(PRELOAD_MODES, "a preload mode"), choices=PRELOAD_MODES)
JSON_OBJECT = Kind(_json_object, lambda value: json.dumps(dict(value)), "JSON")


def setting(default: Any, env: tuple[str, ...], kind: Kind, help: str, **row: Any) -> Any:
    """A field of RuntimeSettings and its row of the table (``row``: Setting's optional columns)."""
    return field(default=default, metadata={"setting": (env, kind, help, row)})
