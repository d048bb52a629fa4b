"""Auth against real registries: htpasswd Basic, Bearer from a real token server, helpers, redirects."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.oci.registry.conftest import PASSWORD, REFRESH_TOKEN, USER, InstallHelper, Redirecting, repo
from tests.oci.registry.images import assemble, layer
from tests.oci.registry.servers import TokenServer
from tests.registry_support import Registry

from kiln.errors import RegistryError
from kiln.oci.registry import RegistryClient, fetch_base, push_image, stream_layer

WriteConfig = Callable[[dict[str, Any]], Path]


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _image(tmp_path: Path, *contents: bytes) -> Any:
    return assemble(tmp_path, [layer(tmp_path, {f"f{i}": data}) for i, data in enumerate(contents)])


# ---- Basic ----------------------------------------------------------------------------------


def test_basic_auth_from_the_docker_config_file(
    basic_registry: Registry, tmp_path: Path, docker_config: WriteConfig
) -> None:
    docker_config({"auths": {f"https://{basic_registry.host}/v1/": {"auth": _auth(USER, PASSWORD)}}})
    image = _image(tmp_path, os.urandom(3000), os.urandom(3000))
    name = repo("basic")
    mark = basic_registry.mark()

    report = push_image(image, f"{basic_registry.host}/{name}:1")

    assert len(report.digests("uploaded")) == 3
    # One anonymous GET /v2/ learns the challenge; every later request carries Basic credentials.
    assert [r.path for r in basic_registry.requests(mark) if r.status == 401] == ["/v2/"]
    with RegistryClient(basic_registry.host) as client:
        assert client.get_manifest(name, "1").digest == image.digest


def test_basic_auth_without_credentials_says_how_to_log_in(
    basic_registry: Registry, tmp_path: Path, docker_config: WriteConfig
) -> None:
    docker_config({"auths": {}})
    with pytest.raises(RegistryError) as caught:
        push_image(_image(tmp_path, b"x"), f"{basic_registry.host}/{repo()}:1")
    error = caught.value
    assert (error.status, error.registry) == (401, basic_registry.host)
    assert error.message.endswith("failed: HTTP 401 Unauthorized")  # a HEAD: no error body
    assert error.hint is not None
    assert error.hint.startswith(f"no credentials found; log in with 'docker login {basic_registry.host}'")


def test_a_wrong_password_is_reported_without_the_password(
    basic_registry: Registry, tmp_path: Path, docker_config: WriteConfig
) -> None:
    secret = "wrong-Secret-4711"
    path = docker_config({"auths": {basic_registry.host: {"auth": _auth(USER, secret)}}})
    with pytest.raises(RegistryError) as caught:
        push_image(_image(tmp_path, b"x"), f"{basic_registry.host}/{repo()}:1")
    text = caught.value.format()
    assert secret not in text
    assert _auth(USER, secret) not in text
    assert "HTTP 401 Unauthorized" in text
    assert f"used user '{USER}' from {path} (auths['{basic_registry.host}'])" in text


def test_credentials_from_a_credential_helper(
    basic_registry: Registry,
    tmp_path: Path,
    docker_config: WriteConfig,
    install_helper: InstallHelper,
) -> None:
    asked = install_helper("kilntest", {basic_registry.host: (USER, PASSWORD)})
    # credHelpers wins over auths (whose password here is wrong).
    docker_config(
        {
            "auths": {basic_registry.host: {"auth": _auth(USER, "not-this-one")}},
            "credHelpers": {basic_registry.host: "kilntest"},
        }
    )

    report = push_image(_image(tmp_path, os.urandom(100)), f"{basic_registry.host}/{repo('helper')}:1")

    assert len(report.digests("uploaded")) == 2
    assert asked.read_text().splitlines() == [basic_registry.host]


def test_credentials_from_a_creds_store(
    basic_registry: Registry,
    tmp_path: Path,
    docker_config: WriteConfig,
    install_helper: InstallHelper,
) -> None:
    asked = install_helper("kiltstore", {basic_registry.host: (USER, PASSWORD)})
    docker_config({"credsStore": "kiltstore"})

    push_image(_image(tmp_path, os.urandom(100)), f"{basic_registry.host}/{repo('store')}:1")

    assert asked.read_text().splitlines() == [basic_registry.host]


def test_a_missing_credential_helper_is_named(
    basic_registry: Registry, tmp_path: Path, docker_config: WriteConfig
) -> None:
    docker_config({"credHelpers": {basic_registry.host: "absent-helper"}})
    with pytest.raises(RegistryError, match="docker-credential-absent-helper is not on PATH"):
        push_image(_image(tmp_path, b"x"), f"{basic_registry.host}/{repo()}:1")


# ---- Bearer -----------------------------------------------------------------------------------


def test_bearer_tokens_from_the_token_server_cached_per_scope(
    token_registry: Registry, token_server: TokenServer, tmp_path: Path, docker_config: WriteConfig
) -> None:
    docker_config({"auths": {token_registry.host: {"auth": _auth(USER, PASSWORD)}}})
    name = repo("bearer")
    image = _image(tmp_path, os.urandom(2000), os.urandom(2000), os.urandom(2000))
    before = len(token_server.requests)

    report = push_image(image, f"{token_registry.host}/{name}:1")
    again = push_image(image, f"{token_registry.host}/{name}:1")

    assert len(report.digests("uploaded")) == 4
    assert len(again.digests("skipped")) == 4
    asked = token_server.requests[before:]
    # One token per push (a client per push), for the push scope, with the user's login;
    # the 4 blobs x (HEAD, POST, PUT) and 2 manifest PUTs reuse it.
    assert [(r.kind, r.user, r.scopes) for r in asked] == [
        ("basic", USER, (f"repository:{name}:pull,push",))
    ] * 2
    assert all(r.granted for r in asked)


def test_bearer_mount_asks_for_both_repositories(
    token_registry: Registry, token_server: TokenServer, tmp_path: Path, docker_config: WriteConfig
) -> None:
    docker_config({"auths": {token_registry.host: {"auth": _auth(USER, PASSWORD)}}})
    first = repo("first")
    push_image(_image(tmp_path, os.urandom(1000)), f"{token_registry.host}/{first}:1")
    base = fetch_base(f"{token_registry.host}/{first}:1", "linux/amd64")
    second = repo("second")
    before = len(token_server.requests)

    report = push_image(assemble(tmp_path, [*base.layers]), f"{token_registry.host}/{second}:1")

    assert report.digests("mounted") == (base.layers[0].digest,)
    scopes = [r.scopes for r in token_server.requests[before:]]
    assert (f"repository:{first}:pull", f"repository:{second}:pull,push") in scopes


def test_an_identity_token_is_exchanged_as_a_refresh_token(
    token_registry: Registry, token_server: TokenServer, tmp_path: Path, docker_config: WriteConfig
) -> None:
    docker_config({"auths": {token_registry.host: {"identitytoken": REFRESH_TOKEN}}})
    before = len(token_server.requests)

    push_image(_image(tmp_path, os.urandom(500)), f"{token_registry.host}/{repo('refresh')}:1")

    assert {(r.method, r.kind, r.user, r.granted) for r in token_server.requests[before:]} == {
        ("POST", "refresh", USER, True)
    }


def test_a_helper_token_is_an_identity_token(
    token_registry: Registry,
    token_server: TokenServer,
    tmp_path: Path,
    docker_config: WriteConfig,
    install_helper: InstallHelper,
) -> None:
    install_helper("kilntoken", {token_registry.host: ("<token>", REFRESH_TOKEN)})
    docker_config({"credHelpers": {token_registry.host: "kilntoken"}})
    before = len(token_server.requests)

    push_image(_image(tmp_path, os.urandom(500)), f"{token_registry.host}/{repo('helpertoken')}:1")

    assert {r.kind for r in token_server.requests[before:]} == {"refresh"}


def test_the_token_server_refusing_a_login_is_reported(
    token_registry: Registry, token_server: TokenServer, tmp_path: Path, docker_config: WriteConfig
) -> None:
    secret = "bad-Password-0815"
    path = docker_config({"auths": {token_registry.host: {"auth": _auth(USER, secret)}}})
    name = repo("refused")
    with pytest.raises(RegistryError) as caught:
        push_image(_image(tmp_path, b"x"), f"{token_registry.host}/{name}:1")
    text = caught.value.format()
    assert secret not in text
    assert (
        f"registry {token_registry.host}: the token server {token_server.url}/token refused a token for "
        f"repository:{name}:pull,push with user '{USER}' from {path} "
        f"(auths['{token_registry.host}']): HTTP 401"
    ) in text


def test_anonymous_tokens_without_access_end_in_unauthorized(
    token_registry: Registry, tmp_path: Path, docker_config: WriteConfig
) -> None:
    docker_config({})
    with pytest.raises(RegistryError) as caught:
        push_image(_image(tmp_path, b"x"), f"{token_registry.host}/{repo()}:1")
    assert caught.value.status == 401


# ---- redirects ---------------------------------------------------------------------------------


def test_authorization_is_not_forwarded_on_a_redirect_to_another_host(
    redirecting: Redirecting, tmp_path: Path, docker_config: WriteConfig
) -> None:
    registry, storage = redirecting.registry, redirecting.storage
    docker_config({"auths": {registry.host: {"auth": _auth(USER, PASSWORD)}}})
    top = layer(tmp_path, {"weights": os.urandom(50_000)})
    name = repo("redirect")
    push_image(assemble(tmp_path, [top]), f"{registry.host}/{name}:1")
    base = fetch_base(f"{registry.host}/{name}:1", "linux/amd64")
    mark, seen = registry.mark(), len(storage.requests)

    streamed = b"".join(stream_layer(base, base.layers[0]))

    assert top.path is not None
    assert streamed == top.path.read_bytes()
    registry_side = [r for r in registry.requests(mark) if r.method == "GET" and "/blobs/" in r.path]
    assert [r.status for r in registry_side] == [307]  # sent with Basic (the registry wants it)
    fetched = storage.requests[seen:]
    assert [(method, path.rsplit("/", 3)[-2]) for method, path, _ in fetched] == [
        ("GET", base.layers[0].digest.removeprefix("sha256:"))
    ]
    assert all("authorization" not in headers for _, _, headers in storage.requests)
