"""pip's index settings reach uv: parsing ``pip config list`` and the real pip of this venv."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.env import indexes

LISTING = """\
global.cert='/etc/ssl/certs/ca.crt'
global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'
global.index-url='https://global.example/simple'
download.index-url='https://download.example/simple'
:env:.find-links='/opt/wheels'
:env:.index-url='https://env.example/simple'
"""


def test_later_sections_win_and_lists_split() -> None:
    found = indexes.from_config(indexes.parse_config_list(LISTING))
    assert found.index_url == "https://env.example/simple"
    assert found.extra_index_urls == ("file:///opt/a/simple", "file:///opt/b/simple")
    assert found.find_links == ("/opt/wheels",)
    assert found.cert == "/etc/ssl/certs/ca.crt"
    assert found.uv_args() == [
        "--index-url",
        "https://env.example/simple",
        "--extra-index-url",
        "file:///opt/a/simple",
        "--extra-index-url",
        "file:///opt/b/simple",
        "--find-links",
        "/opt/wheels",
        "--index-strategy",
        "unsafe-best-match",
    ]
    assert found.uv_env({}) == {"SSL_CERT_FILE": "/etc/ssl/certs/ca.crt"}
    assert found.uv_env({"SSL_CERT_FILE": "/mine.pem"}) == {}


def test_no_settings_give_no_arguments() -> None:
    assert indexes.from_config({}).uv_args() == []


def test_real_pip_reports_pip_environment_variables(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PIP_CONFIG_FILE": str(tmp_path / "none.conf"),
        "PIP_EXTRA_INDEX_URL": "https://user:kiln-test-secret-token@127.0.0.1:9/simple",
    }
    found = indexes.pip_indexes(env)
    assert found.extra_index_urls == ("https://user:kiln-test-secret-token@127.0.0.1:9/simple",)


@pytest.mark.parametrize("name", ["UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_NO_INDEX"])
def test_uv_settings_take_precedence(name: str, tmp_path: Path) -> None:
    assert indexes.uv_configured({name: "x", "XDG_CONFIG_HOME": str(tmp_path)})
