"""Docker's config file and credential helpers as kiln reads them; WWW-Authenticate parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from tests.oci.registry.conftest import InstallHelper

from kiln.errors import RegistryError
from kiln.oci.registry.auth import Challenge, parse_challenges
from kiln.oci.registry.credentials import Credentials, load_credentials


def _config(folder: Path, config: object) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(folder)}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auths_entries_match_by_host_whatever_their_scheme_or_path(tmp_path: Path) -> None:
    env = _config(
        tmp_path,
        {
            "auths": {
                "https://registry.example.com/v1/": {"auth": _b64("alice:pa:ss")},
                "127.0.0.1:5000": {"username": "bob", "password": "pw"},
                "ghcr.io": {"identitytoken": "refresh-me"},
            }
        },
    )
    alice = load_credentials("registry.example.com", env)
    assert alice is not None
    assert (alice.username, alice.password) == ("alice", "pa:ss")  # only the first ':' splits
    bob = load_credentials("127.0.0.1:5000", env)
    assert bob is not None
    assert (bob.username, bob.password) == ("bob", "pw")
    ghcr = load_credentials("ghcr.io", env)
    assert ghcr is not None
    assert ghcr.identity_token == "refresh-me"
    assert load_credentials("127.0.0.1:5001", env) is None


def test_docker_hub_is_filed_under_its_legacy_url(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": _b64("hubuser:hubpw")}}})
    found = load_credentials("registry-1.docker.io", env)
    assert found is not None
    assert found.username == "hubuser"


def test_secrets_never_show_in_a_repr_or_description() -> None:
    creds = Credentials(username="u", password="hunter2", identity_token="tok3n", origin="somewhere")
    assert "hunter2" not in repr(creds) and "tok3n" not in repr(creds)
    assert creds.describe() == "user 'u' from somewhere"


def test_no_config_file_means_no_credentials(tmp_path: Path) -> None:
    assert load_credentials("ghcr.io", {"DOCKER_CONFIG": str(tmp_path / "nothing")}) is None


def test_a_broken_config_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"config.json is not valid JSON \(line 1"):
        load_credentials("ghcr.io", {"DOCKER_CONFIG": str(tmp_path)})


def test_a_broken_auth_value_is_named(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {"ghcr.io": {"auth": "%%%"}}})
    with pytest.raises(RegistryError, match=r"auths\['ghcr.io'\]\): 'auth' is not base64 of 'user:password'"):
        load_credentials("ghcr.io", env)


def test_helpers_get_the_server_address_on_stdin_and_hub_its_legacy_url(
    tmp_path: Path, install_helper: InstallHelper
) -> None:
    asked = install_helper("unit", {"https://index.docker.io/v1/": ("hub", "hubsecret")})
    env = _config(tmp_path / "cfg", {"credsStore": "unit", "auths": {"ghcr.io": {"auth": _b64("file:pw")}}})

    hub = load_credentials("registry-1.docker.io", env)
    fallback = load_credentials("ghcr.io", env)  # the helper has none: the file's entry is used

    assert hub is not None
    assert (hub.username, hub.password, hub.origin) == (
        "hub",
        "hubsecret",
        "credential helper docker-credential-unit",
    )
    assert fallback is not None
    assert fallback.username == "file"
    assert asked.read_text().splitlines() == ["https://index.docker.io/v1/", "ghcr.io"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
            'scope="repository:team/app:pull,push"',
            [
                Challenge(
                    "bearer",
                    (
                        ("realm", "https://auth.example.com/token"),
                        ("service", "registry.example.com"),
                        ("scope", "repository:team/app:pull,push"),
                    ),
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [Challenge("basic", (("realm", "Registry Realm"),))]),
        (
            'Bearer realm="https://a/t", error="insufficient_scope", Basic realm="x\\"y"',
            [
                Challenge("bearer", (("realm", "https://a/t"), ("error", "insufficient_scope"))),
                Challenge("basic", (("realm", 'x"y'),)),
            ],
        ),
        (
            "Bearer realm=https://a/t,service=reg",
            [Challenge("bearer", (("realm", "https://a/t"), ("service", "reg")))],
        ),
    ],
)
def test_www_authenticate_headers_parse(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected
