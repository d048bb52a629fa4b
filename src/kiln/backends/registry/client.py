"""RegistryClient: the registry HTTP API v2 for one registry (manifests, blobs, mounts, uploads).

Plain HTTP is used for loopback registries (127.0.0.0/8, ``localhost``, ``::1``), as Docker
does, and for hosts listed in ``KILN_INSECURE_REGISTRIES`` (comma-separated ``host[:port]``);
HTTPS otherwise, verified against ``$SSL_CERT_FILE``, ``$REQUESTS_CA_BUNDLE`` or the system
store. Redirects are followed by hand: ``Authorization`` goes to the registry's own origin
only, never to the object store a blob GET is sent on to.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import re
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from kiln.backends.registry.auth import Authenticator, Credentials, load_credentials
from kiln.errors import RegistryError
from kiln.image.oci.types import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    Descriptor,
)

log = logging.getLogger(__name__)

INSECURE_ENV = "KILN_INSECURE_REGISTRIES"
ACCEPT_MANIFESTS = ", ".join((*INDEX_MEDIA_TYPES, *MANIFEST_MEDIA_TYPES))
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
"""Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size."""
_SYSTEM_CA = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_MAX_CHUNK_FAILURES = 3
_RANGE = re.compile(r"(?:bytes=)?(\d+)-(\d+)")


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry served it (the exact bytes, so the digest holds)."""

    data: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        value = json.loads(self.data)
        if not isinstance(value, dict):
            raise ValueError("a manifest is a JSON object")
        return value


def is_loopback(registry: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (with or without a port)."""
    host = _host_only(registry)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_registries(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The ``host[:port]`` entries of ``KILN_INSECURE_REGISTRIES``."""
    raw = (os.environ if env is None else env).get(INSECURE_ENV, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def uses_plain_http(registry: str, env: Mapping[str, str] | None = None) -> bool:
    """Loopback registries and those in ``KILN_INSECURE_REGISTRIES`` (by host or host:port) speak HTTP."""
    listed = insecure_registries(env)
    return is_loopback(registry) or registry in listed or _host_only(registry) in listed


def _host_only(registry: str) -> str:
    if registry.startswith("["):
        return registry[1:].split("]", 1)[0]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def ca_bundle(env: Mapping[str, str] | None = None) -> str | None:
    """The CA file to trust: ``$SSL_CERT_FILE``, ``$REQUESTS_CA_BUNDLE``, else the system bundle."""
    env = os.environ if env is None else env
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = env.get(name)
        if value and Path(value).is_file():
            return value
    return next((path for path in _SYSTEM_CA if Path(path).is_file()), None)


class RegistryClient:
    """The v2 API of one registry. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: Credentials | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.chunk_size = chunk_size
        self.plain_http = uses_plain_http(registry, env)
        self.base_url = f"{'http' if self.plain_http else 'https'}://{registry}"
        cafile = ca_bundle(env)
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=cafile) if cafile else True
        self._http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=15.0),
            follow_redirects=False,
            # A loopback registry is never reached through a proxy from the environment.
            trust_env=not is_loopback(registry),
            headers={"User-Agent": "kiln"},
        )
        insecure = insecure_registries(env)

        def plain_http_ok(host: str) -> bool:
            return is_loopback(host) or host in insecure or _host_only(host) in insecure

        def find() -> Credentials | None:
            return credentials if credentials is not None else load_credentials(registry, env)

        self.auth = Authenticator(registry, self._http, credentials=find, plain_http_ok=plain_http_ok)
        self._ping_lock = threading.Lock()
        self._pinged = False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- manifests ------------------------------------------------------------------------

    def get_manifest(self, repository: str, target: str, *, accept: str = ACCEPT_MANIFESTS) -> Manifest:
        """GET a manifest or index by tag or digest; the digest of the bytes is checked."""
        what = f"get manifest {target!r}"
        response = self._call(
            what, repository, "GET", self._url(repository, "manifests", target), headers={"Accept": accept}
        )
        self._expect(response, what, repository, 200)
        data = response.content
        digest = _sha256(data)
        _check_digest(self.registry, repository, what, expected=target, got=digest, only_if_digest=True)
        header = response.headers.get("docker-content-digest")
        if header and header.startswith("sha256:"):
            _check_digest(self.registry, repository, what, expected=header, got=digest)
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if media_type not in (*MANIFEST_MEDIA_TYPES, *INDEX_MEDIA_TYPES):
            with suppress(ValueError, AttributeError):
                media_type = str(json.loads(data).get("mediaType") or media_type)
        return Manifest(data=data, media_type=media_type, digest=digest)

    def head_manifest(self, repository: str, target: str) -> Descriptor | None:
        """The manifest's descriptor by HEAD, or None when the registry has no such manifest."""
        what = f"check manifest {target!r}"
        url = self._url(repository, "manifests", target)
        response = self._call(what, repository, "HEAD", url, headers={"Accept": ACCEPT_MANIFESTS})
        if response.status_code == 404:
            return None
        self._expect(response, what, repository, 200)
        digest = response.headers.get("docker-content-digest", "")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return Descriptor(media_type, digest, int(response.headers.get("content-length", "0")))

    def put_manifest(self, repository: str, target: str, data: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or its digest; returns the digest the registry confirmed."""
        what = f"put manifest {target!r}"
        response = self._call(
            what,
            repository,
            "PUT",
            self._url(repository, "manifests", target),
            headers={"Content-Type": media_type},
            content=data,
            push=True,
        )
        self._expect(response, what, repository, 201)
        digest = _sha256(data)
        header = response.headers.get("docker-content-digest")
        if header:
            _check_digest(self.registry, repository, what, expected=digest, got=header)
        return digest

    # ---- blobs -------------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: str, *, push: bool = False) -> int | None:
        """HEAD a blob: its size, or None when the repository does not have it."""
        what = f"check blob {digest}"
        response = self._call(what, repository, "HEAD", self._url(repository, "blobs", digest), push=push)
        if response.status_code == 404:
            return None
        self._expect(response, what, repository, 200)
        return int(response.headers.get("content-length", "-1"))

    @contextmanager
    def open_blob(self, repository: str, digest: str) -> Iterator[Iterator[bytes]]:
        """Stream a blob (following a redirect to object storage); its digest is checked at the end.

        ``with client.open_blob(repo, digest) as chunks: for chunk in chunks: ...``; a
        mismatch raises RegistryError after the last chunk.
        """
        what = f"get blob {digest}"
        response = self._call(what, repository, "GET", self._url(repository, "blobs", digest), stream=True)
        try:
            if response.status_code != 200:
                response.read()
                self._expect(response, what, repository, 200)
            yield self._verified(response, repository, digest)
        finally:
            response.close()

    def _verified(self, response: httpx.Response, repository: str, digest: str) -> Iterator[bytes]:
        hasher = hashlib.sha256()
        try:
            for chunk in response.iter_bytes(1024 * 1024):
                hasher.update(chunk)
                yield chunk
        except httpx.HTTPError as exc:
            raise self._transport_error(f"get blob {digest}", repository, exc) from exc
        _check_digest(
            self.registry,
            repository,
            f"get blob {digest}",
            expected=digest,
            got=f"sha256:{hasher.hexdigest()}",
        )

    def download_blob(self, repository: str, digest: str, dest: Path) -> int:
        """Write a blob to ``dest`` (via a temporary file next to it, renamed once verified)."""
        partial = dest.with_name(dest.name + ".partial")
        size = 0
        try:
            with self.open_blob(repository, digest) as chunks, partial.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
            partial.replace(dest)
        finally:
            partial.unlink(missing_ok=True)
        return size

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        """Cross-repository mount. None when mounted; else the upload location the registry opened."""
        what = f"mount blob {digest} from {from_repository!r}"
        scopes = (*_push_scopes(repository), f"repository:{from_repository}:pull")
        response = self._call(
            what,
            repository,
            "POST",
            self._url(repository, "blobs", "uploads/"),
            params={"mount": digest, "from": from_repository},
            scopes=scopes,
        )
        if response.status_code == 201:
            return None
        self._expect(response, what, repository, 202)
        return self._location(response, what, repository)

    def start_upload(self, repository: str) -> str:
        """POST a new upload session; returns its location."""
        what = "start blob upload"
        response = self._call(what, repository, "POST", self._url(repository, "blobs", "uploads/"), push=True)
        self._expect(response, what, repository, 202)
        return self._location(response, what, repository)

    def upload_blob(self, repository: str, digest: str, path: Path, *, location: str | None = None) -> int:
        """Upload the file at ``path`` as blob ``digest``; returns the bytes sent (resent ones too).

        Up to ``chunk_size`` bytes go in one PUT; larger blobs in PATCH chunks. A failed chunk
        asks the registry how much it has (GET on the upload) and goes on from there; when the
        registry lost the session, the upload starts over once.
        """
        size = path.stat().st_size
        with path.open("rb") as source:
            if size <= self.chunk_size:
                return self._upload_whole(repository, digest, source, size, location)
            try:
                return self._upload_chunked(repository, digest, source, size, location)
            except _SessionLost as lost:
                log.info("registry %s: upload of %s lost (%s); starting over", self.registry, digest, lost)
                return lost.sent + self._upload_chunked(repository, digest, source, size, None)

    def _upload_whole(
        self, repository: str, digest: str, source: BinaryIO, size: int, location: str | None
    ) -> int:
        location = location or self.start_upload(repository)
        data = source.read()
        self._finish_upload(repository, digest, location, data)
        return size

    def _upload_chunked(
        self, repository: str, digest: str, source: BinaryIO, size: int, location: str | None
    ) -> int:
        what = f"upload blob {digest}"
        location = location or self.start_upload(repository)
        offset, sent, failures = 0, 0, 0
        while offset < size:
            source.seek(offset)
            chunk = source.read(self.chunk_size)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            }
            try:
                response = self._call(
                    what, repository, "PATCH", location, headers=headers, content=chunk, push=True
                )
            except RegistryError as exc:
                if exc.status is not None:
                    raise
                response = None
            sent += len(chunk)
            if response is not None and response.status_code == 202:
                location = self._location(response, what, repository)
                offset = _range_end(response, default=offset + len(chunk))
                failures = 0
                continue
            failures += 1
            status = "no answer" if response is None else f"HTTP {response.status_code}"
            if failures > _MAX_CHUNK_FAILURES:
                if response is not None:
                    self._expect(response, what, repository, 202)
                raise RegistryError(
                    f"registry {self.registry}: {what} to repository {repository!r} failed: "
                    f"{failures} attempts at the chunk at byte {offset} failed (last: {status})",
                    registry=self.registry,
                    repository=repository,
                )
            log.info(
                "registry %s: chunk at byte %d of %s failed (%s); resuming",
                self.registry,
                offset,
                digest,
                status,
            )
            location, offset = self._upload_status(repository, digest, location, sent)
        self._finish_upload(repository, digest, location, b"")
        return sent

    def _upload_status(self, repository: str, digest: str, location: str, sent: int) -> tuple[str, int]:
        """Ask where an interrupted upload stands: (its new location, the next offset)."""
        what = f"resume upload of blob {digest}"
        response = self._call(what, repository, "GET", location, push=True)
        if response.status_code in (400, 404):
            raise _SessionLost(f"HTTP {response.status_code} {_error_text(response)}", sent)
        self._expect(response, what, repository, 204)
        return self._location(response, what, repository), _range_end(response, default=0)

    def _finish_upload(self, repository: str, digest: str, location: str, data: bytes) -> None:
        what = f"upload blob {digest}"
        url = httpx.URL(location).copy_add_param("digest", digest)
        headers = {"Content-Type": "application/octet-stream"}
        response = self._call(what, repository, "PUT", str(url), headers=headers, content=data, push=True)
        self._expect(response, what, repository, 201)
        confirmed = response.headers.get("docker-content-digest")
        if confirmed:
            _check_digest(self.registry, repository, what, expected=digest, got=confirmed)

    # ---- the request loop --------------------------------------------------------------------

    def _url(self, repository: str, kind: str, rest: str) -> str:
        return f"{self.base_url}/v2/{repository}/{kind}/{rest}"

    def _call(
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
        """Send one request with authorization; answer one 401 challenge; follow redirects safely."""
        scopes = scopes or (_push_scopes(repository) if push else (f"repository:{repository}:pull",))
        try:
            self._ping()
            authorization = self.auth.header(scopes)
            response = self._send(method, url, headers, params, content, authorization, stream)
            if response.status_code == 401 and _same_origin(response.url, httpx.URL(self.base_url)):
                response.read()
                response.close()
                if self.auth.challenged(response, scopes, authorization):
                    authorization = self.auth.header(scopes)
                    response = self._send(method, url, headers, params, content, authorization, stream)
                    if response.status_code == 401:
                        response.read()
        except httpx.HTTPError as exc:
            raise self._transport_error(what, repository, exc) from exc
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

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        content: bytes | None,
        authorization: str | None,
        stream: bool,
    ) -> httpx.Response:
        origin = httpx.URL(self.base_url)
        send_headers = dict(headers or {})
        if content is None and method in ("POST", "PUT", "PATCH"):
            send_headers["Content-Length"] = "0"
        target = httpx.URL(url, params=params) if params else httpx.URL(url)
        for _ in range(_MAX_REDIRECTS + 1):
            if authorization and _same_origin(target, origin):
                send_headers["Authorization"] = authorization
            else:
                # Object storage behind a redirect gets no registry credential, ever.
                send_headers.pop("Authorization", None)
            request = self._http.build_request(method, target, headers=send_headers, content=content)
            response = self._http.send(request, stream=stream)
            if response.status_code not in _REDIRECTS or method not in ("GET", "HEAD"):
                if not stream:
                    response.read()
                return response
            location = response.headers.get("location")
            response.close()
            if not location:
                return response
            target = response.url.join(location)
            log.debug("registry %s: %s redirected to %s", self.registry, method, target.copy_with(query=None))
        raise httpx.TooManyRedirects(f"more than {_MAX_REDIRECTS} redirects", request=request)

    def _location(self, response: httpx.Response, what: str, repository: str) -> str:
        location = response.headers.get("location")
        if not location:
            raise RegistryError(
                f"registry {self.registry}: {what} in repository {repository!r}: HTTP {response.status_code} "
                "without the Location header the upload needs",
                registry=self.registry,
                repository=repository,
                status=response.status_code,
            )
        return str(response.url.join(location))

    def _expect(self, response: httpx.Response, what: str, repository: str, *ok: int) -> None:
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

    def _transport_error(self, what: str, repository: str, exc: httpx.HTTPError) -> RegistryError:
        hint = None
        text = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError) and ("SSL" in text or "certificate" in text.lower()):
            hint = (
                "the registry's TLS certificate is not trusted: point SSL_CERT_FILE at its CA bundle, "
                f"or for a plain-HTTP registry add {self.registry} to {INSECURE_ENV}"
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


class _SessionLost(Exception):
    """The registry no longer knows an interrupted upload; ``sent`` bytes went for nothing."""

    def __init__(self, reason: str, sent: int) -> None:
        super().__init__(reason)
        self.sent = sent


def _push_scopes(repository: str) -> tuple[str, ...]:
    return (f"repository:{repository}:pull,push",)


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _range_end(response: httpx.Response, *, default: int) -> int:
    """The next offset from a ``Range: 0-N`` answer (distribution says ``0-0`` for an empty upload)."""
    match = _RANGE.fullmatch(response.headers.get("range", "").strip())
    if match is None:
        return default
    end = int(match.group(2))
    return 0 if end == 0 else end + 1


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _check_digest(
    registry: str, repository: str, what: str, *, expected: str, got: str, only_if_digest: bool = False
) -> None:
    if only_if_digest and not expected.startswith("sha256:"):
        return
    if expected != got:
        raise RegistryError(
            f"registry {registry}: {what} in repository {repository!r}: content digest {got} does not match "
            f"the expected {expected}",
            registry=registry,
            repository=repository,
        )


def _registry_error(response: httpx.Response) -> tuple[str | None, str | None]:
    """The first ``{"errors": [{"code", "message"}]}`` entry of an error body, if any."""
    try:
        body = json.loads(response.content or b"null")
        first = body["errors"][0]
        return str(first.get("code") or "") or None, str(first.get("message") or "") or None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, httpx.ResponseNotRead):
        return None, None


def _error_text(response: httpx.Response) -> str:
    code, message = _registry_error(response)
    return " ".join(part for part in (code, message) if part)
