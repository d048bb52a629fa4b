"""RegistrySession: authorized HTTP to one registry, the loop every request goes through.

``request`` gives an operation's request the authorization for the scopes it needs (``GET
/v2/`` first, once, to learn the scheme), answers one 401 challenge, follows redirects by hand
so that ``Authorization`` goes to the registry's own origin only (never to the object store a
blob GET is sent on to), and retries idempotent requests a few times on 429/502/503/504 or a
lost connection. ``check`` turns an unexpected answer into a RegistryError naming the registry,
repository, operation, status and the registry's error code.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

import httpx

from kiln.errors import RegistryError
from kiln.oci.registry.auth import Authenticator
from kiln.oci.registry.credentials import Credentials, load_credentials
from kiln.oci.registry.transport import (
    INSECURE_ENV,
    host_only,
    http_client,
    insecure_registries,
    is_loopback,
    uses_plain_http,
)

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_RETRY_DELAYS = (0.5, 2.0)


@dataclass(frozen=True)
class _Outgoing:
    """One request as an operation asked for it, before authorization and redirects."""

    method: str
    url: httpx.URL
    headers: tuple[tuple[str, str], ...]
    content: bytes | None
    stream: bool


class RegistrySession:
    """Authorized HTTP to one registry (``host[:port]``); thread-safe."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: Credentials | None = None,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.plain_http = uses_plain_http(registry, env)
        self.base_url = f"{'http' if self.plain_http else 'https'}://{registry}"
        self._origin = httpx.URL(self.base_url)
        self._http = http_client(registry, timeout=timeout, env=env)
        insecure = insecure_registries(env)

        def plain_http_ok(host: str) -> bool:
            return is_loopback(host) or host in insecure or host_only(host) in insecure

        def find() -> Credentials | None:
            return credentials if credentials is not None else load_credentials(registry, env)

        self.auth = Authenticator(registry, self._http, credentials=find, plain_http_ok=plain_http_ok)
        self._ping_lock = threading.Lock()
        self._pinged = False

    def close(self) -> None:
        self._http.close()

    def url(self, repository: str, kind: str, rest: str) -> str:
        """``{base}/v2/{repository}/{kind}/{rest}``."""
        return f"{self.base_url}/v2/{repository}/{kind}/{rest}"

    def request(
        self,
        what: str,
        repository: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        push: bool = False,
        scopes: tuple[str, ...] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one request as operation ``what`` on ``repository``; any HTTP status is returned.

        A lost connection raises RegistryError (without a status); check the status with ``check``.
        """
        scopes = scopes or (push_scopes(repository) if push else (f"repository:{repository}:pull",))
        fixed = dict(headers or {})
        if content is None and method in ("POST", "PUT", "PATCH"):
            fixed["Content-Length"] = "0"
        target = httpx.URL(url, params=params) if params else httpx.URL(url)
        outgoing = _Outgoing(method, target, tuple(fixed.items()), content, stream)
        idempotent = method in ("GET", "HEAD")
        for delay in (*_RETRY_DELAYS, None):
            try:
                self._ping()
                response = self._authorized(outgoing, scopes)
            except httpx.TransportError as exc:
                if not idempotent or delay is None or _is_tls_failure(exc):
                    raise self.transport_error(what, repository, exc) from exc
                log.info("registry %s: %s failed (%s); retrying in %.1fs", self.registry, what, exc, delay)
            except httpx.HTTPError as exc:
                raise self.transport_error(what, repository, exc) from exc
            else:
                if not idempotent or delay is None or response.status_code not in _RETRY_STATUS:
                    return response
                response.close()
                delay = _retry_after(response, delay)
                log.info(
                    "registry %s: %s got HTTP %d; retrying in %.1fs",
                    self.registry,
                    what,
                    response.status_code,
                    delay,
                )
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _authorized(self, outgoing: _Outgoing, scopes: tuple[str, ...]) -> httpx.Response:
        """Send with the scopes' authorization; on a 401 from the registry, answer its challenge once."""
        authorization = self.auth.header(scopes)
        response = self._send(outgoing, authorization)
        if response.status_code != 401 or not _same_origin(response.url, self._origin):
            return response
        response.read()
        response.close()
        if not self.auth.challenged(response, scopes, authorization):
            return response
        response = self._send(outgoing, self.auth.header(scopes))
        if response.status_code == 401:
            response.read()
        return response

    def _ping(self) -> None:
        """``GET /v2/`` once, as Docker does: learn the auth scheme before the first real request.

        Then every request carries its authorization from the start (a token per scope is
        fetched before sending): no 401 round trip per scope, no upload body sent twice.
        """
        with self._ping_lock:
            if self._pinged:
                return
            response = self._http.get(f"{self.base_url}/v2/")
            if response.status_code == 401:
                self.auth.learn(response)
            self._pinged = True

    def _send(self, outgoing: _Outgoing, authorization: str | None) -> httpx.Response:
        """Send, following GET/HEAD redirects by hand: credentials go to the registry's origin only."""
        method, target, stream = outgoing.method, outgoing.url, outgoing.stream
        send_headers = dict(outgoing.headers)
        for _ in range(_MAX_REDIRECTS + 1):
            if authorization and _same_origin(target, self._origin):
                send_headers["Authorization"] = authorization
            else:
                # Object storage behind a redirect gets no registry credential, ever.
                send_headers.pop("Authorization", None)
            request = self._http.build_request(method, target, headers=send_headers, content=outgoing.content)
            response = self._http.send(request, stream=stream)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or method not in ("GET", "HEAD") or not location:
                if not stream:
                    response.read()
                return response
            response.close()
            target = response.url.join(location)
            log.debug("registry %s: %s redirected to %s", self.registry, method, target.copy_with(query=None))
        raise httpx.TooManyRedirects(f"more than {_MAX_REDIRECTS} redirects", request=request)

    # ---- answers and errors --------------------------------------------------------------------

    def location(self, response: httpx.Response, what: str, repository: str) -> str:
        """The absolute ``Location`` of an upload answer (the registry must send one)."""
        location = response.headers.get("location")
        if not location:
            raise RegistryError(
                f"registry {self.registry}: {what} in repository {repository!r}: HTTP {response.status_code} "
                "without the Location header an upload needs",
                registry=self.registry,
                repository=repository,
                status=response.status_code,
            )
        return str(response.url.join(location))

    def check(self, response: httpx.Response, what: str, repository: str, *ok: int) -> None:
        """Raise RegistryError unless ``response`` has one of the ``ok`` statuses."""
        if response.status_code in ok:
            return
        code, message = _registry_error(response)
        status = response.status_code
        detail = f"HTTP {status} " + (code or response.reason_phrase) + (f": {message}" if message else "")
        hint = None
        if status in (401, 403):
            creds = self.auth.credentials
            used = f"used {creds.describe()}" if creds else "no credentials found"
            hint = (
                f"{used}; log in with 'docker login {self.registry}' or add credentials for it to "
                "~/.docker/config.json ($DOCKER_CONFIG) - see docs/registries.md"
            )
        raise RegistryError(
            f"registry {self.registry}: {what} in repository {repository!r} failed: {detail}",
            hint=hint,
            registry=self.registry,
            repository=repository,
            status=status,
            code=code,
        )

    @staticmethod
    def error_text(response: httpx.Response) -> str:
        """``CODE message`` from a registry's JSON error body, or ``""``."""
        return " ".join(part for part in _registry_error(response) if part)

    def mismatch(self, repository: str, what: str, expected: str, got: str) -> NoReturn:
        """Raise: the content's digest is not the one expected (a corrupt transfer or a lying registry)."""
        raise RegistryError(
            f"registry {self.registry}: {what} in repository {repository!r}: content digest {got} does not "
            f"match the expected {expected}",
            registry=self.registry,
            repository=repository,
        )

    def transport_error(self, what: str, repository: str, exc: httpx.HTTPError) -> RegistryError:
        hint = None
        text = str(exc) or type(exc).__name__
        if _is_tls_failure(exc):
            hint = (
                "the registry's TLS certificate is not trusted: point SSL_CERT_FILE at its CA bundle, "
                f"or for a plain-HTTP registry add {self.registry} to {INSECURE_ENV}"
            )
        elif _is_name_lookup_failure(exc):
            hint = (
                f"the host name of {self.registry} could not be resolved: check the reference and this "
                "machine's network or proxy settings, or use a local base image "
                "(--base-image docker-archive:FILE or oci:DIR)"
            )
        elif isinstance(exc, httpx.ConnectError) and not self.plain_http:
            hint = f"if {self.registry} speaks plain HTTP, add it to {INSECURE_ENV}"
        return RegistryError(
            f"registry {self.registry} ({self.base_url}): {what} in repository {repository!r} failed: "
            f"{type(exc).__name__}: {text}",
            hint=hint,
            registry=self.registry,
            repository=repository,
        )


def push_scopes(repository: str) -> tuple[str, ...]:
    """The token scopes a push to ``repository`` needs."""
    return (f"repository:{repository}:pull,push",)


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _is_tls_failure(exc: BaseException) -> bool:
    """A TLS handshake or certificate failure: trying again gives the same answer."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after(response: httpx.Response, default: float) -> float:
    """The registry's ``Retry-After`` in seconds (capped at 10), else ``default``."""
    try:
        return min(max(float(response.headers.get("retry-after", "")), 0.0), 10.0)
    except ValueError:
        return default


def _registry_error(response: httpx.Response) -> tuple[str | None, str | None]:
    """The first ``{"errors": [{"code", "message"}]}`` entry of an error body, if any."""
    try:
        body = json.loads(response.content or b"null")
        first = body["errors"][0]
        return str(first.get("code") or "") or None, str(first.get("message") or "") or None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, httpx.ResponseNotRead):
        return None, None


def _is_name_lookup_failure(exc: BaseException) -> bool:
    """True when a connection failed because DNS did not know the host (``socket.gaierror`` underneath)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return True
        text = str(seen)
        if "Name or service not known" in text or "Temporary failure in name resolution" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
