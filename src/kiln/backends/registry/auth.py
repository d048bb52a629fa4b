"""Registry credentials (Docker's config file and credential helpers) and the challenge flow.

A registry answers an anonymous request with ``401`` and ``WWW-Authenticate``:

- ``Bearer realm=...,service=...,scope=...``: kiln asks the realm for a token for the scopes
  the operation needs (with the user's Basic credentials when it has some, or its identity
  token as an OAuth2 refresh token) and retries with ``Authorization: Bearer``; tokens are
  cached per set of scopes until they expire, and later requests for new scopes fetch their
  token before sending (no second 401 round trip, no request body sent twice).
- ``Basic realm=...``: the registry itself takes the user's name and password.

Credentials are looked up only when a registry asks for them, in Docker's order:
``credHelpers[registry]``, then ``credsStore``, then ``auths`` of ``$DOCKER_CONFIG/config.json``
(default ``~/.docker/config.json``). Helpers run as ``docker-credential-NAME get`` with the
server address on stdin, never through a shell.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kiln.backends.registry.reference import DOCKER_HUB
from kiln.errors import RegistryError

log = logging.getLogger(__name__)

HUB_SERVER_ADDRESS = "https://index.docker.io/v1/"
"""The key ``docker login`` uses for Docker Hub in config.json and with credential helpers."""
_HELPER_TIMEOUT = 30.0
_TOKEN_MARGIN = 10.0
_DEFAULT_TOKEN_LIFETIME = 60.0


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
        found = _from_helper(helper, registry)
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


def _from_helper(name: str, registry: str) -> Credentials | None:
    program = f"docker-credential-{name}"
    binary = shutil.which(program)
    if binary is None:
        raise RegistryError(
            f"Docker's config names the credential helper {name!r} for {registry}, "
            f"but {program} is not on PATH",
            hint=f"install {program}, or remove it from credHelpers/credsStore in {docker_config_path()}",
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


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: its scheme (lowercase) and parameters."""

    scheme: str
    params: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return next((value for name, value in self.params if name == key), None)


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenges(header: str) -> list[Challenge]:
    """Parse ``Bearer realm="...",service="..." , Basic realm="..."`` into challenges."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)\s*").match(header, pos)
        if scheme is None or scheme.end() == pos:
            break
        pos = scheme.end()
        params: list[tuple[str, str]] = []
        while True:
            match = _PARAM.match(header, pos)
            if match is None:
                break
            value = match.group(2)
            value = re.sub(r"\\(.)", r"\1", value) if value is not None else match.group(3)
            params.append((match.group(1).lower(), value))
            pos = match.end()
        challenges.append(Challenge(scheme.group(1).lower(), tuple(params)))
    return challenges


def _uncovered(asked: str | None, scopes: tuple[str, ...]) -> frozenset[str]:
    """The scopes a challenge names that ``scopes`` do not already grant (``pull`` is in ``pull,push``)."""
    have: dict[str, set[str]] = {}
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        have.setdefault(resource, set()).update(actions.split(","))
    extra = set()
    for scope in (asked or "").split():
        resource, _, actions = scope.rpartition(":")
        if not set(actions.split(",")) <= have.get(resource, set()):
            extra.add(scope)
    return frozenset(extra)


class Authenticator:
    """Answers one registry's challenges; thread-safe (a push uploads blobs in parallel).

    ``credentials`` is called at most once, on the first challenge; ``plain_http_ok(host)``
    says whether credentials may travel unencrypted to ``host`` (a token realm on http://).
    """

    def __init__(
        self,
        registry: str,
        http: httpx.Client,
        *,
        credentials: Callable[[], Credentials | None],
        plain_http_ok: Callable[[str], bool],
    ) -> None:
        self.registry = registry
        self._http = http
        self._load_credentials = credentials
        self._credentials: Credentials | None = None
        self._loaded = False
        self._plain_http_ok = plain_http_ok
        self._lock = threading.Lock()
        self._basic = False
        self._bearer: Challenge | None = None
        self._tokens: dict[frozenset[str], tuple[str, float]] = {}

    @property
    def credentials(self) -> Credentials | None:
        with self._lock:
            return self._credentials_locked()

    def _credentials_locked(self) -> Credentials | None:
        if not self._loaded:
            self._credentials = self._load_credentials()
            self._loaded = True
        return self._credentials

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization value for a request needing ``scopes``; None before any challenge."""
        with self._lock:
            if self._basic:
                creds = self._credentials_locked()
                return creds.basic() if creds else None
            if self._bearer is None:
                return None
            key = frozenset(scopes)
            cached = self._tokens.get(key)
            if cached is not None and cached[1] > time.monotonic():
                return f"Bearer {cached[0]}"
            return f"Bearer {self._fetch_token(self._bearer, key)}"

    def learn(self, response: httpx.Response) -> None:
        """Note the scheme a 401 (to ``GET /v2/``) asks for, so requests carry authorization at once."""
        with self._lock:
            self._learn_locked(response)

    def _learn_locked(self, response: httpx.Response) -> Challenge | None:
        header = response.headers.get("www-authenticate", "")
        challenges = {c.scheme: c for c in parse_challenges(header)}
        if "bearer" in challenges:
            challenge = challenges["bearer"]
            if not challenge.get("realm"):
                raise RegistryError(
                    f"registry {self.registry} asked for a Bearer token without naming a realm "
                    f"(WWW-Authenticate: {header[:200]})",
                    registry=self.registry,
                    status=401,
                )
            self._bearer, self._basic = challenge, False
            return challenge
        if "basic" in challenges:
            creds = self._credentials_locked()
            self._basic = creds is not None and creds.basic() is not None
            return challenges["basic"]
        return None

    def challenged(self, response: httpx.Response, scopes: tuple[str, ...], sent: str | None) -> bool:
        """React to a 401: True when a retry now carries new authorization worth trying."""
        with self._lock:
            challenge = self._learn_locked(response)
            if challenge is None:
                return False
            if challenge.scheme == "basic":
                creds = self._credentials_locked()
                basic = creds.basic() if creds else None
                return basic is not None and sent != basic
            key = frozenset(scopes) | _uncovered(challenge.get("scope"), scopes)
            cached = self._tokens.get(key)
            if cached is not None and f"Bearer {cached[0]}" != sent and cached[1] > time.monotonic():
                token = cached[0]  # another thread answered the same challenge meanwhile
            else:
                token = self._fetch_token(challenge, key)
            self._tokens[frozenset(scopes)] = self._tokens[key]
            return sent != f"Bearer {token}"

    def _fetch_token(self, challenge: Challenge, scopes: frozenset[str]) -> str:
        realm = challenge.get("realm") or ""
        url = httpx.URL(realm)
        creds = self._credentials_locked()
        if (
            creds is not None
            and url.scheme != "https"
            and not self._plain_http_ok(url.netloc.decode("ascii"))
        ):
            raise RegistryError(
                f"registry {self.registry} sends logins to the token server {realm} over plain HTTP; "
                "kiln refuses to send credentials unencrypted",
                hint="use HTTPS, or list the token server's host in KILN_INSECURE_REGISTRIES",
                registry=self.registry,
            )
        service = challenge.get("service")
        try:
            if creds is not None and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "client_id": "kiln",
                }
                if service:
                    form["service"] = service
                if scopes:
                    form["scope"] = " ".join(sorted(scopes))
                response = self._http.post(url, data=form)
            else:
                params: list[tuple[str, str | int | float | bool | None]] = (
                    [("service", service)] if service else []
                )
                params += [("scope", scope) for scope in sorted(scopes)]
                headers = {}
                if creds is not None and creds.basic():
                    headers["Authorization"] = creds.basic() or ""
                    params.append(("account", creds.username or ""))
                response = self._http.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"registry {self.registry}: the token server {realm} could not be reached: {exc}",
                registry=self.registry,
            ) from exc
        if response.status_code != 200:
            who = creds.describe() if creds else "no credentials (anonymous)"
            raise RegistryError(
                f"registry {self.registry}: the token server {realm} refused a token for "
                f"{' '.join(sorted(scopes)) or 'no scope'} with {who}: HTTP {response.status_code}",
                hint=f"check the login: 'docker login {self.registry}' (see docs/registries.md)",
                registry=self.registry,
                status=response.status_code,
            )
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError) as exc:
            raise RegistryError(
                f"registry {self.registry}: the token server {realm} answered without a JSON token",
                registry=self.registry,
            ) from exc
        if not isinstance(token, str) or not token:
            raise RegistryError(
                f"registry {self.registry}: the token server {realm} answered without a token",
                registry=self.registry,
            )
        self._tokens[scopes] = (token, time.monotonic() + max(lifetime - _TOKEN_MARGIN, 1.0))
        log.debug("registry %s: token for %s (%.0fs)", self.registry, " ".join(sorted(scopes)), lifetime)
        return token
