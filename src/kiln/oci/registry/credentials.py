"""Registry logins as Docker keeps them: ``$DOCKER_CONFIG/config.json`` and credential helpers.

Looked up in Docker's order: ``credHelpers[registry]``, then ``credsStore``, then the ``auths``
entry of ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``). Helpers run as
``docker-credential-NAME get`` with the server address on stdin, never through a shell; when a
helper has nothing for the registry, the ``auths`` entry is tried.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.errors import RegistryError
from kiln.oci.reference import DOCKER_HUB

HUB_SERVER_ADDRESS = "https://index.docker.io/v1/"
"""The key ``docker login`` uses for Docker Hub in config.json and with credential helpers."""
_HELPER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Credentials:
    """A user's login for one registry, and where it was found (for messages, never the secret)."""

    username: str | None = field(default=None)
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    """An OAuth2 refresh token (``identitytoken`` in config.json, ``<token>`` from a helper)."""
    origin: str = ""
    """``~/.docker/config.json auths``, ``credential helper docker-credential-pass``."""

    def basic(self) -> str | None:
        """The ``Authorization: Basic`` value, when there is a name and password."""
        if self.username is None or self.password is None:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def describe(self) -> str:
        who = f"user {self.username!r}" if self.username else "an identity token"
        return f"{who} from {self.origin}"


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if env is None else env
    folder = env.get("DOCKER_CONFIG")
    return Path(folder).expanduser() / "config.json" if folder else Path.home() / ".docker" / "config.json"


def server_address(registry: str) -> str:
    """The name Docker files a registry's login under (Docker Hub has its own legacy URL)."""
    return HUB_SERVER_ADDRESS if registry == DOCKER_HUB else registry


def load_credentials(registry: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """The login Docker would use for ``registry`` (``host[:port]``), or None when there is none."""
    path = docker_config_path(env)
    config = _read_config(path)
    if config is None:
        return None
    origin = str(path)
    helpers = config.get("credHelpers")
    helper = helpers.get(registry) if isinstance(helpers, dict) else None
    if helper is None and registry == DOCKER_HUB and isinstance(helpers, dict):
        helper = helpers.get("docker.io") or helpers.get("index.docker.io")
    helper = helper or config.get("credsStore")
    if isinstance(helper, str) and helper:
        found = _from_helper(helper, registry, path)
        if found is not None:
            return found
    return _from_auths(config.get("auths"), registry, origin)


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RegistryError(f"cannot read Docker's config file {path}: {exc.strerror}") from exc
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"Docker's config file {path} is not valid JSON (line {exc.lineno}: {exc.msg})",
            hint="fix the file, or point DOCKER_CONFIG at a folder with a valid config.json",
        ) from exc
    if not isinstance(config, dict):
        raise RegistryError(
            f"Docker's config file {path} holds a JSON {type(config).__name__}, expected an object"
        )
    return config


def _hostname(key: str) -> str:
    """Docker's convertToHostname: no scheme, no path (``https://host:5000/v1/`` -> ``host:5000``)."""
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key.split("/", 1)[0]


def _from_auths(auths: object, registry: str, origin: str) -> Credentials | None:
    if not isinstance(auths, dict):
        return None
    wanted = {registry, *(("docker.io", "index.docker.io") if registry == DOCKER_HUB else ())}
    for key, entry in auths.items():
        if _hostname(str(key)) not in wanted or not isinstance(entry, dict):
            continue
        where = f"{origin} (auths[{key!r}])"
        token = entry.get("identitytoken") or None
        username, password = entry.get("username"), entry.get("password")
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError) as exc:
                raise RegistryError(
                    f"{where}: 'auth' is not base64 of 'user:password'",
                    hint=f"log in again with 'docker login {registry}'",
                ) from exc
            username, sep, password = decoded.partition(":")
            if not sep:
                raise RegistryError(f"{where}: 'auth' decodes to no 'user:password' pair (no ':')")
        if token or (username and password is not None):
            return Credentials(
                username=username or None, password=password, identity_token=token, origin=where
            )
    return None


def _from_helper(name: str, registry: str, config: Path) -> Credentials | None:
    program = f"docker-credential-{name}"
    binary = shutil.which(program)
    if binary is None:
        raise RegistryError(
            f"Docker's config names the credential helper {name!r} for {registry}, "
            f"but {program} is not on PATH",
            hint=f"install {program}, or remove it from credHelpers/credsStore in {config}",
        )
    address = server_address(registry)
    try:
        done = subprocess.run(
            [binary, "get"],
            input=address,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RegistryError(
            f"credential helper {program} did not answer within {_HELPER_TIMEOUT:.0f}s"
        ) from exc
    if done.returncode != 0:
        said = (done.stdout.strip() or done.stderr.strip())[:200]
        if "credentials not found" in said.lower():
            return None
        raise RegistryError(
            f"credential helper {program} failed for {address} (exit {done.returncode}): {said}"
        )
    try:
        answer = json.loads(done.stdout)
        username, secret = answer.get("Username"), answer.get("Secret")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise RegistryError(
            f"credential helper {program} answered something that is not its JSON for {address}"
        ) from exc
    origin = f"credential helper {program}"
    if not isinstance(secret, str) or not secret:
        return None
    if username == "<token>":
        return Credentials(identity_token=secret, origin=origin)
    return Credentials(username=str(username or ""), password=secret, origin=origin)
