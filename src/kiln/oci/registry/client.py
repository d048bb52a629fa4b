"""RegistryClient: the registry HTTP API v2 for one registry (manifests, blobs, mounts, uploads).

The requests themselves go through a ``RegistrySession`` (session.py: authorization, redirects,
retries, errors); uploads are in upload.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kiln.oci.registry.auth import Authenticator
from kiln.oci.registry.credentials import Credentials
from kiln.oci.registry.session import RegistrySession, push_scopes
from kiln.oci.registry.upload import upload_blob
from kiln.oci.types import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, Descriptor

ACCEPT_MANIFESTS = ", ".join((*INDEX_MEDIA_TYPES, *MANIFEST_MEDIA_TYPES))
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
"""Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size."""


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


class RegistryClient:
    """The v2 API of one registry (``host[:port]``). Use as a context manager, or call ``close()``.

    Thread-safe: a push shares one client between its upload threads.
    """

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
        self.session = RegistrySession(registry, credentials=credentials, timeout=timeout, env=env)

    @property
    def base_url(self) -> str:
        return self.session.base_url

    @property
    def auth(self) -> Authenticator:
        return self.session.auth

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- manifests ------------------------------------------------------------------------

    def get_manifest(self, repository: str, target: str, *, accept: str = ACCEPT_MANIFESTS) -> Manifest:
        """GET a manifest or index by tag or digest; the digest of the bytes is checked."""
        what = f"get manifest {target!r}"
        url = self.session.url(repository, "manifests", target)
        response = self.session.request(what, repository, "GET", url, headers={"Accept": accept})
        self.session.check(response, what, repository, 200)
        data = response.content
        if target.startswith("sha"):
            self._check_digest(repository, what, target, data)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        header = response.headers.get("docker-content-digest", "")
        if header.startswith("sha256:") and header != digest:
            self.session.mismatch(repository, what, header, digest)
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if media_type not in (*MANIFEST_MEDIA_TYPES, *INDEX_MEDIA_TYPES):
            with suppress(ValueError, AttributeError):
                media_type = str(json.loads(data).get("mediaType") or media_type)
        return Manifest(data=data, media_type=media_type, digest=digest)

    def head_manifest(self, repository: str, target: str) -> Descriptor | None:
        """The manifest's descriptor by HEAD, or None when the registry has no such manifest."""
        what = f"check manifest {target!r}"
        url = self.session.url(repository, "manifests", target)
        response = self.session.request(what, repository, "HEAD", url, headers={"Accept": ACCEPT_MANIFESTS})
        if response.status_code == 404:
            return None
        self.session.check(response, what, repository, 200)
        digest = response.headers.get("docker-content-digest", "")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return Descriptor(media_type, digest, int(response.headers.get("content-length", "0")))

    def put_manifest(self, repository: str, target: str, data: bytes, media_type: str) -> str:
        """PUT a manifest under a tag or its digest; returns its digest, as the registry confirmed."""
        what = f"put manifest {target!r}"
        url = self.session.url(repository, "manifests", target)
        headers = {"Content-Type": media_type}
        response = self.session.request(
            what, repository, "PUT", url, headers=headers, content=data, push=True
        )
        self.session.check(response, what, repository, 201)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        confirmed = response.headers.get("docker-content-digest")
        if confirmed and confirmed != digest:
            self.session.mismatch(repository, what, digest, confirmed)
        return digest

    # ---- blobs -------------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: str, *, push: bool = False) -> int | None:
        """HEAD a blob: its size, or None when the repository does not have it."""
        what = f"check blob {digest}"
        response = self.session.request(
            what, repository, "HEAD", self.session.url(repository, "blobs", digest), push=push
        )
        if response.status_code == 404:
            return None
        self.session.check(response, what, repository, 200)
        return int(response.headers.get("content-length", "-1"))

    @contextmanager
    def open_blob(self, repository: str, digest: str) -> Iterator[Iterator[bytes]]:
        """Stream a blob (following a redirect to object storage); its digest is checked at the end.

        ``with client.open_blob(repo, digest) as chunks: for chunk in chunks: ...``; a
        mismatch raises RegistryError after the last chunk.
        """
        what = f"get blob {digest}"
        response = self.session.request(
            what, repository, "GET", self.session.url(repository, "blobs", digest), stream=True
        )
        try:
            if response.status_code != 200:
                response.read()
                self.session.check(response, what, repository, 200)
            yield self._verified(response, repository, what, digest)
        finally:
            response.close()

    def _verified(self, response: httpx.Response, repository: str, what: str, digest: str) -> Iterator[bytes]:
        algorithm = digest.split(":", 1)[0]
        hasher = hashlib.new(algorithm if algorithm in ("sha256", "sha512") else "sha256")
        try:
            for chunk in response.iter_bytes(1024 * 1024):
                hasher.update(chunk)
                yield chunk
        except httpx.HTTPError as exc:
            raise self.session.transport_error(what, repository, exc) from exc
        got = f"{hasher.name}:{hasher.hexdigest()}"
        if got != digest:
            self.session.mismatch(repository, what, digest, got)

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
        response = self.session.request(
            what,
            repository,
            "POST",
            self.session.url(repository, "blobs", "uploads/"),
            params={"mount": digest, "from": from_repository},
            scopes=(*push_scopes(repository), f"repository:{from_repository}:pull"),
        )
        if response.status_code == 201:
            return None
        self.session.check(response, what, repository, 202)
        return self.session.location(response, what, repository)

    def upload_blob(self, repository: str, digest: str, path: Path, *, location: str | None = None) -> int:
        """Upload the file at ``path`` as blob ``digest`` (see ``upload``); returns the bytes sent."""
        return upload_blob(self.session, self.chunk_size, repository, digest, path, location=location)

    def _check_digest(self, repository: str, what: str, digest: str, data: bytes) -> None:
        algorithm = digest.split(":", 1)[0]
        if algorithm in ("sha256", "sha512"):
            got = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
            if got != digest:
                self.session.mismatch(repository, what, digest, got)
