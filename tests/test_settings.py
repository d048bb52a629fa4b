"""kiln.settings: one table of runtime settings, and what is generated from it (parsing, env, CLI, docs)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import click
import pytest

from kiln import contract
from kiln.cli.serve import serve
from kiln.errors import UsageError
from kiln.settings import SETTINGS, RuntimeSettings, markdown_table, update_docs

README = Path(__file__).parents[1] / "README.md"

# Every spelling `kiln serve` had before the table generated its options; each must keep working.
OPTIONS_BEFORE_THE_TABLE = {
    "-m", "--model-uri", "--tracking-uri", "--registry-uri", "--port", "--workers", "--no-nginx",
    "--disable-nginx", "--request-timeout", "--max-body-size", "--grace-period", "--max-queue", "--metrics",
    "--no-metrics", "--openapi", "--no-openapi", "--expose-tracebacks", "--log-level", "--model-config",
    "--runtime-dir", "--help", "-h",
}  # fmt: skip


def test_the_table_is_the_dataclass() -> None:
    assert [row.name for row in SETTINGS] == [f.name for f in dataclasses.fields(RuntimeSettings)]
    assert RuntimeSettings() == RuntimeSettings(**{row.name: row.default for row in SETTINGS})
    assert RuntimeSettings.from_env({}) == RuntimeSettings()


def test_every_environment_name_is_one_settings_and_kilns_comes_first() -> None:
    names = [name for row in SETTINGS for name in row.env]
    assert len(names) == len(set(names))
    assert all(row.env[0] == "KILN_" + row.name.upper() for row in SETTINGS if row.name != "install_missing")
    # contract.py keeps the names (the image ABI); every ENV_* tuple there is a row here, but
    # KILN_MODEL_AGNOSTIC, which the builder sets in model-agnostic images for the runtime to read.
    abi = {
        value
        for name, value in vars(contract).items()
        if name.startswith("ENV_") and name not in ("ENV_MANAGERS", "ENV_MODEL_AGNOSTIC")
    }
    assert abi == {row.env for row in SETTINGS}


def test_one_name_on_the_cli_in_python_and_in_the_environment() -> None:
    """``--request-timeout``, ``request_timeout``, ``KILN_REQUEST_TIMEOUT``; older spellings kept beside."""
    for row in SETTINGS:
        if not row.options:
            continue
        spelling = row.name.replace("_", "-")
        env_spelling = row.env[0].removeprefix("KILN_").lower().replace("_", "-")
        assert {f"--{spelling}", f"--{env_spelling}"} & set(row.options), row
    assert {row.name for row in SETTINGS if not row.options} == {"model_dir"}  # `kiln serve -m`


def test_kiln_serve_options_are_the_tables() -> None:
    params = {param.name: param for param in serve.params}
    for row in SETTINGS:
        if row.options:
            param = params[row.name]
            assert isinstance(param, click.Option)
            assert set(row.options) <= set(param.opts) | set(param.secondary_opts)
            assert param.help == row.cli_help()
    spellings = {opt for param in serve.params for opt in [*param.opts, *param.secondary_opts]}
    spellings |= {"--help", "-h"}
    assert spellings >= OPTIONS_BEFORE_THE_TABLE
    new = {"--host", "--max-header-size", "--client-timeout", "--install-missing-requirements"}
    assert new <= spellings


def test_from_env_parses_every_kind() -> None:
    environ = {
        "KILN_HOST": "::1", "KILN_PORT": "9000", "KILN_WORKERS": "3", "DISABLE_NGINX": "yes",
        "KILN_REQUEST_TIMEOUT": "2.5s", "KILN_MAX_BODY_SIZE": "1m", "KILN_MAX_HEADER_SIZE": "16k",
        "KILN_CLIENT_TIMEOUT": "3", "KILN_GRACE_PERIOD": "5", "KILN_MAX_QUEUE": "0", "KILN_METRICS": "off",
        "KILN_OPENAPI": "0", "KILN_EXPOSE_TRACEBACKS": "true", "KILN_LOG_LEVEL": "DEBUG",
        "SERVING_MODEL_CONFIG": '{"a": 1}', "KILN_RUNTIME_DIR": "/run/k", "KILN_MODEL_DIR": "/m",
        "KILN_INSTALL_MISSING_REQUIREMENTS": "1", "KILN_NGINX_BINARY": "/opt/nginx",
    }  # fmt: skip
    settings = RuntimeSettings.from_env(environ)
    assert settings == RuntimeSettings().replace(
        model_dir="/m", host="::1", port=9000, workers=3, disable_nginx=True, request_timeout=2.5,
        max_body_size=1024 * 1024, max_header_size=16 * 1024, client_timeout=3.0, grace_period=5.0,
        max_queue=0, metrics=False, openapi=False, expose_tracebacks=True, log_level="debug",
        model_config={"a": 1}, runtime_dir="/run/k", install_missing=True, nginx_binary="/opt/nginx",
    )  # fmt: skip
    # to_env hands every setting to the workers under kiln's own names, and reads back the same.
    assert RuntimeSettings.from_env(settings.to_env()) == settings
    assert set(settings.to_env()) == {
        row.env[0] for row in SETTINGS if getattr(settings, row.name) is not None
    }


def test_to_env_leaves_out_what_is_unset() -> None:
    env = RuntimeSettings().to_env()
    assert "KILN_WORKERS" not in env and "KILN_MODEL_CONFIG" not in env and "KILN_NGINX_BINARY" not in env
    assert env["KILN_HOST"] == "0.0.0.0"
    assert env["KILN_CLIENT_TIMEOUT"] == "10"
    assert env["KILN_MAX_HEADER_SIZE"] == "32768"
    assert RuntimeSettings.from_env({"KILN_WORKERS": "auto"}).workers is None


def test_kilns_name_wins_over_mlflows_and_overrides_win_over_both() -> None:
    environ = {"KILN_HOST": "127.0.0.1", "MLFLOW_HOST": "0.0.0.0", "MLFLOW_MODELS_WORKERS": "4"}
    settings = RuntimeSettings.from_env(environ, workers=None, port=7000)
    assert (settings.host, settings.workers, settings.port) == ("127.0.0.1", 4, 7000)
    assert RuntimeSettings.from_env({"MLFLOW_HOST": "10.0.0.1"}).host == "10.0.0.1"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KILN_PORT": "70000"}, "KILN_PORT='70000' is not a TCP port"),
        ({"KILN_HOST": "a b"}, "KILN_HOST='a b' is not an address to listen on"),
        ({"KILN_HOST": "1:2:3"}, "KILN_HOST='1:2:3' is not an address to listen on"),
        ({"KILN_MAX_HEADER_SIZE": "100"}, "KILN_MAX_HEADER_SIZE='100' is too small for a request head"),
        ({"KILN_CLIENT_TIMEOUT": "0"}, "KILN_CLIENT_TIMEOUT='0' must be a positive"),
        ({"KILN_LOG_LEVEL": "loud"}, "KILN_LOG_LEVEL='loud' is not a log level"),
        ({"MLFLOW_MODELS_WORKERS": "0"}, "MLFLOW_MODELS_WORKERS='0' must be at least 1"),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(")):
        RuntimeSettings.from_env(environ)


def test_readme_table_is_generated_from_the_table() -> None:
    readme = README.read_text(encoding="utf-8")
    assert markdown_table() in readme
    assert update_docs(readme) == readme, "regenerate it: python -m kiln.settings --write README.md"


def test_python_m_kiln_settings_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kiln.settings"], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == markdown_table()
    assert "| `KILN_HOST`, `MLFLOW_HOST` | `--host HOST` |" in result.stdout
