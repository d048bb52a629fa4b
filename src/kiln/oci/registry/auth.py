"""The challenge flow: answer a registry's ``WWW-Authenticate`` with Basic or a Bearer token.

A registry answers an anonymous request with ``401`` and ``WWW-Authenticate``:

- ``Bearer realm=...,service=...,scope=...``: kiln asks the realm for a token for the scopes
  the operation needs (with the user's Basic credentials when it has some, or its identity
  token as an OAuth2 refresh token) and retries with ``Authorization: Bearer``; tokens are
  cached per set of scopes until they expire, and later requests for new scopes fetch their
  token before sending (no second 401 round trip, no request body sent twice).
- ``Basic realm=...``: the registry itself takes the user's name and password.

Credentials (``credentials.py``) are looked up only when a registry asks for them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from kiln.errors import RegistryError
from kiln.oci.registry.credentials import Credentials

log = logging.getLogger(__name__)

_TOKEN_MARGIN = 10.0
_DEFAULT_TOKEN_LIFETIME = 60.0


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
        creds = self._credentials_locked()
        response = self._request_token(httpx.URL(realm), challenge.get("service"), scopes, creds)
        if response.status_code != 200:
            who = creds.describe() if creds else "no credentials (anonymous)"
            raise RegistryError(
                f"registry {self.registry}: the token server {realm} refused a token for "
                f"{' '.join(sorted(scopes)) or 'no scope'} with {who}: HTTP {response.status_code}",
                hint=f"check the login: 'docker login {self.registry}' (see docs/registries.md)",
                registry=self.registry,
                status=response.status_code,
            )
        token, lifetime = self._token_of(response, realm)
        self._tokens[scopes] = (token, time.monotonic() + max(lifetime - _TOKEN_MARGIN, 1.0))
        log.debug("registry %s: token for %s (%.0fs)", self.registry, " ".join(sorted(scopes)), lifetime)
        return token

    def _request_token(
        self, url: httpx.URL, service: str | None, scopes: frozenset[str], creds: Credentials | None
    ) -> httpx.Response:
        """Ask the token server: OAuth2 refresh-token POST with an identity token, else GET with Basic."""
        if (
            creds is not None
            and url.scheme != "https"
            and not self._plain_http_ok(url.netloc.decode("ascii"))
        ):
            raise RegistryError(
                f"registry {self.registry} sends logins to the token server {url} over plain HTTP; "
                "kiln refuses to send credentials unencrypted",
                hint="use HTTPS, or list the token server's host in KILN_INSECURE_REGISTRIES",
                registry=self.registry,
            )
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
                return self._http.post(url, data=form, follow_redirects=True)
            params: list[tuple[str, str | int | float | bool | None]] = (
                [("service", service)] if service else []
            )
            params += [("scope", scope) for scope in sorted(scopes)]
            headers = {}
            if creds is not None and creds.basic():
                headers["Authorization"] = creds.basic() or ""
                params.append(("account", creds.username or ""))
            # httpx drops Authorization when a redirect leaves the realm's origin.
            return self._http.get(url, params=params, headers=headers, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"registry {self.registry}: the token server {url} could not be reached: {exc}",
                registry=self.registry,
            ) from exc

    def _token_of(self, response: httpx.Response, realm: str) -> tuple[str, float]:
        """The token and its lifetime in seconds from the token server's JSON answer."""
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
        return token, lifetime
