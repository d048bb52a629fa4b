"""RuntimeSettings: every knob of the serving runtime, declared once in one table.

Each field of ``RuntimeSettings`` is one row of the table: its name (``request_timeout``, and so
``--request-timeout`` on ``kiln serve``), its environment names (kiln's own first, then MLflow's
where MLflow has one; they live in ``kiln.contract``, the image ABI), its kind (how a string
becomes the value and back), its default and its help. ``from_env``, ``to_env``, the ``kiln
serve`` options (``kiln.cli.serve``) and the README's table of settings (``python -m
kiln.settings``) are all made from it, as starlette's ``Config`` keeps one cast table.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kiln import contract, envvars
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


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeSettings:
    """What the supervisor, nginx and the scoring app are configured with.

    Field names are the user-facing names: ``--request-timeout`` on the CLI,
    ``request_timeout`` here, ``KILN_REQUEST_TIMEOUT`` in the environment.
    """

    # fmt: off
    model_dir: str = setting(
        contract.MODEL_DIR, contract.ENV_MODEL_DIR, TEXT, "Where the model is", flags=(),
    )
    host: str = setting(
        contract.HOST, contract.ENV_HOST, ADDRESS,
        "Address to listen on: 127.0.0.1 serves this machine only, 0.0.0.0 every interface",
        serve_default=contract.LOCAL_HOST, serve_default_text=contract.LOCAL_HOST,
    )
    port: int = setting(contract.PORT, contract.ENV_PORT, PORT, "Port to serve on")
    workers: int | None = setting(
        None, contract.ENV_WORKERS, WORKERS, "uvicorn worker processes",
        default_text="auto: one per CPU this process may use",
    )
    """None: one per CPU the container may use (its CPU quota, not the host's core count)."""
    accelerator: str = setting(
        "cpu", contract.ENV_ACCELERATOR, ACCELERATOR,
        "What the workers compute on (cuda: one worker per GPU the container was given, each "
        "pinned to its own with CUDA_VISIBLE_DEVICES; CUDA images set it)",
    )
    preload_model: str = setting(
        "auto", contract.ENV_PRELOAD_MODEL, PRELOAD_MODE,
        "Load the model once and fork the workers from that process, sharing its memory (auto: "
        "unless loading started threads or CUDA, or the accelerator is cuda; off: each worker "
        "loads the model itself)",
    )
    disable_nginx: bool = setting(
        False, contract.ENV_DISABLE_NGINX, BOOLEAN,
        "Serve with uvicorn alone on the port, without nginx in front",
        flags=("--no-nginx", "--disable-nginx"),
    )
    request_timeout: float = setting(
        contract.DEFAULT_REQUEST_TIMEOUT, contract.ENV_REQUEST_TIMEOUT, SECONDS,
        "Answer 504 when a request takes longer",
    )
    max_body_size: int = setting(
        contract.DEFAULT_MAX_BODY_SIZE, contract.ENV_MAX_BODY_SIZE, SIZE,
        "Largest request body, e.g. 100m or 1g; larger ones get 413", default_text="100m",
    )
    max_header_size: int = setting(
        contract.DEFAULT_MAX_HEADER_SIZE, contract.ENV_MAX_HEADER_SIZE, HEADER_SIZE,
        "Largest request line and headers together (nginx: at most 8k per line), e.g. 64k; "
        "larger ones get 431", default_text="32k",
    )
    client_timeout: float = setting(
        contract.DEFAULT_CLIENT_TIMEOUT, contract.ENV_CLIENT_TIMEOUT, SECONDS,
        "Time a client has to send a request's line and headers, and the longest a request body "
        "may pause; then the connection is closed",
    )
    grace_period: float = setting(
        contract.DEFAULT_GRACE_PERIOD, contract.ENV_GRACE_PERIOD, SECONDS,
        "Time to finish in-flight requests on SIGTERM",
    )
    max_queue: int = setting(
        contract.DEFAULT_MAX_QUEUE, contract.ENV_MAX_QUEUE, COUNT,
        "Scoring requests one worker holds at once (being predicted or waiting); more get an "
        "immediate 503 with Retry-After. 0: no limit",
    )
    metrics: bool = setting(
        True, contract.ENV_METRICS, BOOLEAN, "Prometheus metrics on /metrics", negation="--no-metrics",
    )
    openapi: bool = setting(
        True, contract.ENV_OPENAPI, BOOLEAN,
        "The model's OpenAPI document on /openapi.json and a docs page on /docs", negation="--no-openapi",
    )
    expose_tracebacks: bool = setting(
        False, contract.ENV_EXPOSE_TRACEBACKS, BOOLEAN,
        "Include stack traces of model errors in error answers",
    )
    log_level: str = setting("info", contract.ENV_LOG_LEVEL, LOG_LEVEL, "Log level")
    model_config: Mapping[str, Any] | None = setting(
        None, contract.ENV_MODEL_CONFIG, JSON_OBJECT, "JSON object passed to the model's loader",
    )
    runtime_dir: str = setting(
        contract.RUNTIME_DIR, contract.ENV_RUNTIME_DIR, TEXT,
        "Where the runtime writes its socket, nginx.conf and temp files",
        metavar="DIR", serve_default_text="a fresh temp dir",
    )
    install_missing: bool = setting(
        False, contract.ENV_INSTALL_MISSING, BOOLEAN,
        "Model-agnostic images: install a mounted model's missing packages at start",
        flags=("--install-missing-requirements", "--install-missing"),
    )
    nginx_binary: str | None = setting(
        None, contract.ENV_NGINX_BINARY, OPTIONAL_TEXT, "The nginx executable",
        metavar="PATH", default_text="nginx on $PATH, then /usr/sbin/nginx",
    )
    v2: bool = setting(
        True, contract.ENV_V2, BOOLEAN,
        "The Open Inference Protocol v2 (KServe V2) endpoints under /v2", negation="--no-v2",
    )
    v2_model_name: str = setting(
        contract.DEFAULT_V2_MODEL_NAME, contract.ENV_V2_MODEL_NAME, TEXT,
        "The model's name in the V2 paths (/v2/models/NAME)", metavar="NAME",
    )
    v2_model_version: str | None = setting(
        None, contract.ENV_V2_MODEL_VERSION, OPTIONAL_TEXT,
        "The model's version in the V2 paths (/v2/models/NAME/versions/VERSION)", metavar="VERSION",
        default_text="none: only the unversioned paths",
    )
    # fmt: on

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> RuntimeSettings:
        """Settings from environment variables; ``overrides`` (e.g. CLI flags) win when not None."""
        values: dict[str, Any] = {}
        for row in SETTINGS:
            found = envvars.lookup(environ, row.env)
            if found is not None:
                values[row.name] = row.kind.parse(*found)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """kiln's own variables for these settings (those not None), to hand to child processes."""
        env: dict[str, str] = {}
        for row in SETTINGS:
            value = getattr(self, row.name)
            if value is not None:
                env[row.env[0]] = row.kind.format(value)
        return env

    def replace(self, **changes: Any) -> RuntimeSettings:
        return dataclasses.replace(self, **changes)


def _rows() -> tuple[Setting, ...]:
    rows = []
    for item in dataclasses.fields(RuntimeSettings):
        env, kind, help, extra = item.metadata["setting"]
        rows.append(Setting(item.name, item.default, env, kind, help, **extra))
    return tuple(rows)


SETTINGS: tuple[Setting, ...] = _rows()
"""The table, in its order (the order of ``kiln serve``'s options and of the docs' table)."""


# --- the docs' table ---------------------------------------------------------------------------

DOCS_BEGIN = "<!-- generated from src/kiln/settings.py by `python -m kiln.settings --write README.md` -->"
DOCS_END = "<!-- end of settings table -->"


def markdown_table() -> str:
    """The table of settings as the README shows it (between DOCS_BEGIN and DOCS_END)."""
    lines = ["| Variable | `kiln serve` option | Meaning | Default |", "|---|---|---|---|"]
    for row in SETTINGS:
        names = ", ".join(f"`{name}`" for name in row.env)
        lines.append(f"| {names} | {_option_text(row)} | {_meaning(row)} | {_docs_default(row)} |")
    return "\n".join(lines) + "\n"


def update_docs(text: str) -> str:
    """``text`` with the part between DOCS_BEGIN and DOCS_END replaced by ``markdown_table()``."""
    head, begin, rest = text.partition(DOCS_BEGIN)
    _, end, tail = rest.partition(DOCS_END)
    if not begin or not end:
        raise UsageError(f"no settings table to update: expected the lines {DOCS_BEGIN!r} and {DOCS_END!r}")
    return f"{head}{DOCS_BEGIN}\n{markdown_table()}{DOCS_END}{tail}"


def _option_text(row: Setting) -> str:
    if not row.options:
        return ""
    if row.negation is not None:
        return f"`{row.options[0]}` / `{row.negation}`"
    metavar = "" if row.is_flag or row.kind.choices else f" {row.metavar or row.kind.metavar or 'TEXT'}"
    return " / ".join(f"`{option}{metavar}`" for option in row.options)


def _meaning(row: Setting) -> str:
    if row.kind.choices:
        return f"{row.help}: {', '.join(row.kind.choices)}"
    return row.help


def _docs_default(row: Setting) -> str:
    shown = row.shown_default() or "none"
    if row.serve_default_text is not None:
        return f"{shown} (`kiln serve`: {row.serve_default_text})"
    return shown


def main(argv: list[str] | None = None) -> int:
    """``python -m kiln.settings``: print the docs' table; ``--write FILE``: update it in FILE."""
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--write"] and len(args) == 2:
        path = Path(args[1])
        path.write_text(update_docs(path.read_text(encoding="utf-8")), encoding="utf-8")
    elif not args:
        sys.stdout.write(markdown_table())
    else:
        sys.stderr.write("usage: python -m kiln.settings [--write FILE]\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
