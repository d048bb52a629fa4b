"""Registries for the client tests: plain, Basic (htpasswd), Bearer (a real token server), redirecting."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.oci.registry.servers import StorageServer, TokenServer, credential_helper
from tests.registry_support import Registry, htpasswd_auth, registry, started_registry  # noqa: F401

USER, PASSWORD = "kiln-user", "s3cret-pass-word"
REFRESH_TOKEN = "kiln-refresh-token-0123456789"


@dataclass
class Redirecting:
    """A Basic-auth registry whose blob GETs answer 307 to ``storage`` (another origin)."""

    registry: Registry
    storage: StorageServer


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry that wants ``USER``/``PASSWORD`` by Basic auth (bcrypt htpasswd)."""
    root = tmp_path_factory.mktemp("basic-registry")
    with started_registry(root, auth=htpasswd_auth(root, {USER: PASSWORD})) as running:
        yield running


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(tmp_path_factory.mktemp("token"), {USER: PASSWORD}, {REFRESH_TOKEN: USER})
    with server.running():
        yield server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer) -> Iterator[Registry]:
    """A registry in ``auth: token`` mode: it trusts only JWTs ``token_server`` signed."""
    with started_registry(
        tmp_path_factory.mktemp("token-registry"), auth=token_server.auth_config()
    ) as running:
        yield running


@pytest.fixture(scope="session")
def redirecting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redirecting]:
    root = tmp_path_factory.mktemp("redirect-registry")
    storage = StorageServer(root / "data")
    with storage.running():
        auth = htpasswd_auth(root, {USER: PASSWORD})
        with started_registry(root, auth=auth, redirect_to=storage.url) as running:
            yield Redirecting(running, storage)


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, Any]], Path]:
    """``docker_config({...})`` writes a Docker config.json and points $DOCKER_CONFIG at it."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))

    def write(config: dict[str, Any]) -> Path:
        path = folder / "config.json"
        path.write_text(json.dumps(config))
        return path

    return write


InstallHelper = Callable[[str, dict[str, tuple[str, str]]], Path]


@pytest.fixture
def install_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InstallHelper:
    """``install_helper(NAME, {server: (user, secret)})`` puts ``docker-credential-NAME`` on PATH;
    returns the file that lists the server addresses it was asked about."""
    folder = tmp_path / "helpers"
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def install(name: str, answers: dict[str, tuple[str, str]]) -> Path:
        credential_helper(folder, name, answers)
        return folder / f"{name}.asked"

    return install


@pytest.fixture
def no_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials from this machine's own ~/.docker leak into a test."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty-docker-config"))


def repo(prefix: str = "t") -> str:
    """A repository name no other test uses (the session registry is shared)."""
    return f"kiln-test/{prefix}-{uuid.uuid4().hex[:10]}"
