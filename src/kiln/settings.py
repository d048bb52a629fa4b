"""RuntimeSettings: every knob of the serving runtime, read once from the environment."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kiln import contract, envvars
from kiln.errors import UsageError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True)
class RuntimeSettings:
    """What the supervisor, nginx and the scoring app are configured with.

    Field names are the user-facing names: ``--request-timeout`` on the CLI,
    ``request_timeout`` here, ``KILN_REQUEST_TIMEOUT`` in the environment.
    """

    model_dir: str = contract.MODEL_DIR
    port: int = contract.PORT
    workers: int | None = None
    """None: one per CPU the container may use (its CPU quota, not the host's core count)."""
    request_timeout: float = contract.DEFAULT_REQUEST_TIMEOUT
    disable_nginx: bool = False
    max_body_size: int = contract.DEFAULT_MAX_BODY_SIZE
    grace_period: float = contract.DEFAULT_GRACE_PERIOD
    max_queue: int = contract.DEFAULT_MAX_QUEUE
    """Scoring requests per worker, waiting or being predicted; more get 503 at once. 0: no limit."""
    metrics: bool = True
    openapi: bool = True
    """Serve ``/openapi.json`` and ``/docs`` for the model."""
    expose_tracebacks: bool = False
    log_level: str = "info"
    model_config: Mapping[str, Any] | None = None
    runtime_dir: str = contract.RUNTIME_DIR
    install_missing: bool = False
    nginx_binary: str | None = None
    """The nginx executable; None: ``nginx`` on $PATH, then /usr/sbin/nginx."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> RuntimeSettings:
        """Settings from environment variables; ``overrides`` (e.g. CLI flags) win when not None."""
        values: dict[str, Any] = {}
        _read(values, environ, "model_dir", contract.ENV_MODEL_DIR, lambda n, v: v)
        _read(values, environ, "port", contract.ENV_PORT, _port)
        _read(values, environ, "workers", contract.ENV_WORKERS, _workers)
        _read(values, environ, "request_timeout", contract.ENV_REQUEST_TIMEOUT, envvars.parse_seconds)
        _read(values, environ, "disable_nginx", contract.ENV_DISABLE_NGINX, envvars.parse_bool)
        _read(values, environ, "max_body_size", contract.ENV_MAX_BODY_SIZE, envvars.parse_size)
        _read(values, environ, "grace_period", contract.ENV_GRACE_PERIOD, envvars.parse_seconds)
        _read(values, environ, "max_queue", contract.ENV_MAX_QUEUE, _max_queue)
        _read(values, environ, "metrics", contract.ENV_METRICS, envvars.parse_bool)
        _read(values, environ, "openapi", contract.ENV_OPENAPI, envvars.parse_bool)
        _read(values, environ, "expose_tracebacks", contract.ENV_EXPOSE_TRACEBACKS, envvars.parse_bool)
        _read(values, environ, "log_level", contract.ENV_LOG_LEVEL, _log_level)
        _read(values, environ, "model_config", contract.ENV_MODEL_CONFIG, _model_config)
        _read(values, environ, "runtime_dir", contract.ENV_RUNTIME_DIR, lambda n, v: v)
        _read(values, environ, "install_missing", contract.ENV_INSTALL_MISSING, envvars.parse_bool)
        _read(values, environ, "nginx_binary", contract.ENV_NGINX_BINARY, lambda n, v: v or None)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """kiln's own variables for these settings, to hand to child processes."""
        env = {
            contract.ENV_MODEL_DIR[0]: self.model_dir,
            contract.ENV_PORT[0]: str(self.port),
            contract.ENV_REQUEST_TIMEOUT[0]: repr(self.request_timeout),
            contract.ENV_DISABLE_NGINX[0]: _flag(self.disable_nginx),
            contract.ENV_MAX_BODY_SIZE[0]: str(self.max_body_size),
            contract.ENV_GRACE_PERIOD[0]: repr(self.grace_period),
            contract.ENV_MAX_QUEUE[0]: str(self.max_queue),
            contract.ENV_METRICS[0]: _flag(self.metrics),
            contract.ENV_OPENAPI[0]: _flag(self.openapi),
            contract.ENV_EXPOSE_TRACEBACKS[0]: _flag(self.expose_tracebacks),
            contract.ENV_LOG_LEVEL[0]: self.log_level,
            contract.ENV_RUNTIME_DIR[0]: self.runtime_dir,
            contract.ENV_INSTALL_MISSING[0]: _flag(self.install_missing),
        }
        if self.workers is not None:
            env[contract.ENV_WORKERS[0]] = str(self.workers)
        if self.nginx_binary is not None:
            env[contract.ENV_NGINX_BINARY[0]] = self.nginx_binary
        if self.model_config is not None:
            env[contract.ENV_MODEL_CONFIG[0]] = json.dumps(dict(self.model_config))
        return env

    def replace(self, **changes: Any) -> RuntimeSettings:
        return dataclasses.replace(self, **changes)


def _read(
    values: dict[str, Any],
    environ: Mapping[str, str],
    field: str,
    names: tuple[str, ...],
    parse: Any,
) -> None:
    found = envvars.lookup(environ, names)
    if found is not None:
        values[field] = parse(*found)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _port(name: str, value: str) -> int:
    port = envvars.parse_int(name, value, minimum=1)
    if port > 65535:
        raise UsageError(f"{name}={value!r} is not a TCP port (expected 1-65535)")
    return port


def _workers(name: str, value: str) -> int | None:
    if value.strip().lower() in ("", "auto"):
        return None
    return envvars.parse_int(name, value, minimum=1)


def _max_queue(name: str, value: str) -> int:
    return envvars.parse_int(name, value, minimum=0)


def _log_level(name: str, value: str) -> str:
    level = value.strip().lower()
    if level not in LOG_LEVELS:
        raise UsageError(f"{name}={value!r} is not a log level (expected one of {', '.join(LOG_LEVELS)})")
    return level


def _model_config(name: str, value: str) -> Mapping[str, Any] | None:
    if not value.strip():
        return None
    return envvars.parse_json_object(name, value)
