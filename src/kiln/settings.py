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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kiln import contract, envvars
from kiln.errors import UsageError
from kiln.setting_kinds import (
    ACCELERATOR,
    ADDRESS,
    BATCH_SIZE,
    BOOLEAN,
    COUNT,
    HEADER_SIZE,
    JSON_OBJECT,
    LOG_LEVEL,
    MILLISECONDS,
    OPTIONAL_TEXT,
    PORT,
    PRELOAD_MODE,
    SECONDS,
    SIZE,
    TEXT,
    WORKERS,
    Setting,
    setting,
)

__all__ = ["SETTINGS", "RuntimeSettings", "Setting", "markdown_table", "update_docs"]

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
    max_batch_size: int = setting(
        contract.DEFAULT_MAX_BATCH_SIZE, contract.ENV_MAX_BATCH_SIZE, BATCH_SIZE,
        "Adaptive micro-batching: most /invocations requests one worker combines into one predict "
        "call (same format, columns, dtypes and params; only for models that predict row by row). "
        "1: no batching",
    )
    max_batch_delay: float = setting(
        contract.DEFAULT_MAX_BATCH_DELAY, contract.ENV_MAX_BATCH_DELAY, MILLISECONDS,
        "Milliseconds a request that finds its worker predicting may wait for more to join its "
        "batch (an idle worker predicts at once)",
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
