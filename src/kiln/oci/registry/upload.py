"""Blob uploads: one PUT for a small blob, PATCH chunks with resume for a large one.

A chunk that fails (no answer, a 5xx, ``416``) makes kiln ask the registry where the upload
stands (``GET`` on the session: ``Range: 0-N``) and go on from byte N+1. When the registry no
longer knows the session (distribution cancels it if a chunk arrived but its answer was lost:
"upload resumed at wrong offset"), the blob starts over, once.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import BinaryIO

import httpx

from kiln.errors import RegistryError
from kiln.oci.registry.session import RegistrySession

log = logging.getLogger(__name__)

MAX_CHUNK_FAILURES = 3
"""Failures in a row at one offset that end an upload (the fourth raises)."""
_RANGE = re.compile(r"(?:bytes=)?(\d+)-(\d+)")


class _SessionLost(Exception):
    """The registry no longer knows an interrupted upload; ``sent`` bytes went for nothing."""

    def __init__(self, reason: str, sent: int) -> None:
        super().__init__(reason)
        self.sent = sent


def start_upload(session: RegistrySession, repository: str) -> str:
    """POST a new upload session; returns its location."""
    what = "start blob upload"
    response = session.request(
        what, repository, "POST", session.url(repository, "blobs", "uploads/"), push=True
    )
    session.check(response, what, repository, 202)
    return session.location(response, what, repository)


def upload_blob(
    session: RegistrySession,
    chunk_size: int,
    repository: str,
    digest: str,
    path: Path,
    *,
    location: str | None = None,
) -> int:
    """Upload the file at ``path`` as blob ``digest``; returns the bytes sent (resent ones too)."""
    size = path.stat().st_size
    with path.open("rb") as source:
        if size <= chunk_size:
            location = location or start_upload(session, repository)
            _finish(session, repository, digest, location, source.read())
            return size
        try:
            return _chunked(session, chunk_size, repository, digest, source, size, location)
        except _SessionLost as lost:
            log.info("registry %s: upload of %s lost (%s); starting over", session.registry, digest, lost)
            try:
                return lost.sent + _chunked(session, chunk_size, repository, digest, source, size, None)
            except _SessionLost as again:
                raise RegistryError(
                    f"registry {session.registry}: upload blob {digest} to repository {repository!r} failed: "
                    f"the registry dropped the upload session twice ({again})",
                    registry=session.registry,
                    repository=repository,
                ) from again


def _chunked(
    session: RegistrySession,
    chunk_size: int,
    repository: str,
    digest: str,
    source: BinaryIO,
    size: int,
    location: str | None,
) -> int:
    what = f"upload blob {digest}"
    location = location or start_upload(session, repository)
    offset, sent, failures = 0, 0, 0
    while offset < size:
        source.seek(offset)
        chunk = source.read(chunk_size)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
        }
        response: httpx.Response | None
        try:
            response = session.request(
                what, repository, "PATCH", location, headers=headers, content=chunk, push=True
            )
        except RegistryError as exc:
            if exc.status is not None:  # the token server said no: resuming will not help
                raise
            response = None
        sent += len(chunk)
        if response is not None and response.status_code == 202:
            location = session.location(response, what, repository)
            offset = _next_offset(response, default=offset + len(chunk))
            failures = 0
            _release(response)
            continue
        failures += 1
        status = "no answer" if response is None else f"HTTP {response.status_code}"
        if failures > MAX_CHUNK_FAILURES:
            if response is not None:
                session.check(response, what, repository, 202)
            raise RegistryError(
                f"registry {session.registry}: {what} to repository {repository!r} failed: "
                f"{failures} attempts at the chunk at byte {offset} failed (last: {status})",
                registry=session.registry,
                repository=repository,
            )
        log.info(
            "registry %s: chunk at byte %d of %s failed (%s); resuming",
            session.registry,
            offset,
            digest,
            status,
        )
        location, offset = _status(session, repository, digest, location, sent)
    _finish(session, repository, digest, location, b"")
    return sent


def _release(response: httpx.Response) -> None:
    """Let the chunk go now: httpx's Response and its stream refer to each other, so a response (and
    the chunk its request holds) would live until the cyclic collector ran; a 1 GB push held up to
    a few hundred MB of sent chunks."""
    response.close()
    response.stream = httpx.ByteStream(b"")


def _status(
    session: RegistrySession, repository: str, digest: str, location: str, sent: int
) -> tuple[str, int]:
    """Ask where an interrupted upload stands: (its new location, the next offset)."""
    what = f"resume upload of blob {digest}"
    response = session.request(what, repository, "GET", location, push=True)
    if response.status_code in (400, 404):
        raise _SessionLost(f"HTTP {response.status_code} {session.error_text(response)}".strip(), sent)
    session.check(response, what, repository, 204)
    return session.location(response, what, repository), _next_offset(response, default=0)


def _finish(session: RegistrySession, repository: str, digest: str, location: str, data: bytes) -> None:
    """The closing PUT ``?digest=``, with the last (or only) bytes; the registry must confirm the digest."""
    what = f"upload blob {digest}"
    url = httpx.URL(location).copy_add_param("digest", digest)
    headers = {"Content-Type": "application/octet-stream"}
    response = session.request(what, repository, "PUT", str(url), headers=headers, content=data, push=True)
    session.check(response, what, repository, 201)
    confirmed = response.headers.get("docker-content-digest")
    if confirmed and confirmed != digest:
        raise RegistryError(
            f"registry {session.registry}: {what} to repository {repository!r}: "
            f"the registry stored {confirmed} instead",
            registry=session.registry,
            repository=repository,
        )


def _next_offset(response: httpx.Response, *, default: int) -> int:
    """The offset after a ``Range: 0-N`` answer (distribution says ``0-0`` for an empty upload)."""
    match = _RANGE.fullmatch(response.headers.get("range", "").strip())
    if match is None:
        return default
    end = int(match.group(2))
    return 0 if end == 0 else end + 1
