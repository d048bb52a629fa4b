"""push_image and push_index: blobs first (skipped, mounted, copied or uploaded, in parallel), then the
manifests (each platform's by digest, then the index or the image by digest and by tag), then the
artifacts that refer to them (``referrers.put_artifacts``)."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiln.errors import RegistryError, UsageError
from kiln.oci.index import ImageIndex
from kiln.oci.reference import Reference, parse_reference
from kiln.oci.referrers import Artifact
from kiln.oci.registry.client import DEFAULT_CHUNK_SIZE, RegistryClient
from kiln.oci.registry.referrers import put_artifacts
from kiln.oci.types import Blob, Image
from kiln.progress import Progress

log = logging.getLogger(__name__)

BlobAction = Literal["skipped", "mounted", "uploaded", "copied"]
"""skipped: the repository had it; mounted: from another repository of the same registry;
uploaded: from the local file; copied: fetched from another registry (no local file), then uploaded."""


@dataclass(frozen=True)
class PushedBlob:
    """What the push did with one blob."""

    digest: str
    size: int
    action: BlobAction
    bytes_sent: int = 0
    """Bytes sent to the registry for it (more than ``size`` when a chunk had to be resent)."""
    mounted_from: str | None = None


@dataclass(frozen=True)
class PushReport:
    """The outcome of ``push_image``: per blob what happened, and the manifest digest pushed."""

    reference: Reference
    """Where the image went, pinned: ``registry/repo:tag@sha256:...``."""
    digest: str
    blobs: tuple[PushedBlob, ...]
    seconds: float
    manifests: tuple[str, ...] = ()
    """Every manifest put, in order: each platform's, then the index (or the one image)."""
    artifacts: tuple[str, ...] = ()
    """The artifact manifests put that refer to them (SBOMs, provenance)."""
    referrers_api: bool | None = None
    """Whether the registry indexed the artifacts itself (None: none pushed); False: kiln updated the
    ``sha256-<hex>`` fallback tags instead."""

    @property
    def bytes_uploaded(self) -> int:
        return sum(blob.bytes_sent for blob in self.blobs)

    def digests(self, action: BlobAction) -> tuple[str, ...]:
        """The digests of the blobs the push treated with ``action``."""
        return tuple(blob.digest for blob in self.blobs if blob.action == action)


def push_image(
    image: Image,
    reference: str | Reference,
    *,
    progress: Progress | None = None,
    jobs: int = 4,
    chunk_size: int | None = None,
    referrers: Sequence[Artifact] = (),
) -> PushReport:
    """Push ``image`` to ``reference`` (``registry/repo:tag``): blobs, then the manifest by digest and tag,
    then ``referrers`` (artifacts whose subject is the image).

    Each blob is HEAD-checked first and skipped when present; a blob whose ``source`` is another
    repository of the same registry is mounted; otherwise its ``path`` is uploaded (a base
    layer from another registry is fetched from there first). ``jobs`` blobs go at once.
    """
    top = (image.digest, image.manifest, image.manifest_descriptor.media_type)
    return _push(reference, [image], top, referrers, progress=progress, jobs=jobs, chunk_size=chunk_size)


def push_index(
    index: ImageIndex,
    reference: str | Reference,
    *,
    progress: Progress | None = None,
    jobs: int = 4,
    chunk_size: int | None = None,
    referrers: Sequence[Artifact] = (),
) -> PushReport:
    """Push every image of ``index`` (blobs, then each manifest by digest), then the index by digest
    and by tag, then ``referrers``: a multi-platform image under one tag."""
    top = (index.digest, index.manifest, index.descriptor.media_type)
    return _push(reference, index.images, top, referrers, progress=progress, jobs=jobs, chunk_size=chunk_size)


def _push(
    reference: str | Reference,
    images: Sequence[Image],
    top: tuple[str, bytes, str],
    referrers: Sequence[Artifact],
    *,
    progress: Progress | None,
    jobs: int,
    chunk_size: int | None,
) -> PushReport:
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    digest, data, media_type = top
    if ref.digest is not None and ref.digest != digest:
        raise UsageError(
            f"cannot push to {ref}: it names digest {ref.digest}, "
            f"but the image's manifest digest is {digest}",
            hint="push to a tag (REGISTRY/REPO:TAG), or leave the digest out",
        )
    if jobs < 1:
        raise UsageError(f"push jobs must be at least 1, got {jobs}")
    for manifest, expected in [*((i.manifest, i.digest) for i in images), (data, digest)]:
        if "sha256:" + hashlib.sha256(manifest).hexdigest() != expected:
            raise ValueError(f"manifest descriptor says {expected}, but the manifest bytes hash otherwise")
    blobs = tuple(blob for image in images for blob in image.blobs()) + tuple(
        blob for item in referrers for blob in item.blobs
    )
    nowhere = next((blob for blob in blobs if blob.path is None and not blob.source), None)
    if nowhere is not None:
        raise RegistryError(
            f"cannot push blob {nowhere.digest} to {ref.name}: it has no local file and no registry it "
            "can be mounted or fetched from",
            registry=ref.registry,
            repository=ref.repository,
        )
    started = time.monotonic()
    put: list[str] = []
    with RegistryClient(ref.registry, chunk_size=chunk_size or DEFAULT_CHUNK_SIZE) as client:
        pushed = _push_blobs(client, ref, blobs, progress, jobs)
        for image in images:
            if image.digest != digest:  # an index's platform images: by digest only
                client.put_manifest(
                    ref.repository, image.digest, image.manifest, image.manifest_descriptor.media_type
                )
                put.append(image.digest)
        # By digest first: the tag never names a manifest the registry does not hold whole.
        client.put_manifest(ref.repository, digest, data, media_type)
        if ref.tag:
            client.put_manifest(ref.repository, ref.tag, data, media_type)
        put.append(digest)
        api = put_artifacts(client, ref.repository, referrers) if referrers else None
    return PushReport(
        ref.with_digest(digest),
        digest,
        pushed,
        time.monotonic() - started,
        manifests=tuple(put),
        artifacts=tuple(item.digest for item in referrers),
        referrers_api=api,
    )


def _push_blobs(
    client: RegistryClient, ref: Reference, blobs: tuple[Blob, ...], progress: Progress | None, jobs: int
) -> tuple[PushedBlob, ...]:
    """Push every distinct blob, ``jobs`` at once; the first failure cancels the ones not started."""
    unique = tuple({blob.digest: blob for blob in blobs}.values())
    done: dict[str, PushedBlob] = {}
    with ThreadPoolExecutor(
        max_workers=max(1, min(jobs, len(unique))), thread_name_prefix="kiln-push"
    ) as pool:
        futures = [pool.submit(_push_blob, client, ref, blob) for blob in unique]
        try:
            for future in as_completed(futures):
                result = future.result()
                done[result.digest] = result
                if progress is not None:  # from this thread: progress displays need not be thread-safe
                    extra = f" from {result.mounted_from}" if result.mounted_from else ""
                    progress.detail(
                        f"{result.digest[:19]} {result.action}{extra} ({result.size / 1e6:.1f} MB)"
                    )
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return tuple(done[blob.digest] for blob in unique)


def _push_blob(client: RegistryClient, ref: Reference, blob: Blob) -> PushedBlob:
    repository, digest, size = ref.repository, blob.digest, blob.descriptor.size
    if client.blob_size(repository, digest, push=True) is not None:
        return PushedBlob(digest, size, "skipped")
    source = parse_reference(blob.source) if blob.source else None
    location = None
    if source is not None and source.registry == ref.registry and source.repository != repository:
        location = client.mount_blob(repository, digest, source.repository)
        if location is None:
            return PushedBlob(digest, size, "mounted", mounted_from=source.name)
        log.debug("registry %s refused to mount %s from %s; uploading", ref.registry, digest, source.name)
    if blob.path is not None:
        sent = client.upload_blob(repository, digest, blob.path, location=location)
        return PushedBlob(digest, size, "uploaded", bytes_sent=sent)
    assert source is not None  # push_image refused blobs with neither
    return _copy_blob(client, ref, blob, source, location)


def _copy_blob(
    client: RegistryClient, ref: Reference, blob: Blob, source: Reference, location: str | None
) -> PushedBlob:
    """A base layer from another registry (or one that would not mount): fetch it, then upload it."""
    log.info("blob %s is not in %s: copying it from %s", blob.digest, ref.registry, source.name)
    with tempfile.TemporaryDirectory(prefix="kiln-blob-") as tmp:
        path = Path(tmp) / "blob"
        if source.registry == client.registry:
            client.download_blob(source.repository, blob.digest, path)
        else:
            with RegistryClient(source.registry) as other:
                other.download_blob(source.repository, blob.digest, path)
        sent = client.upload_blob(ref.repository, blob.digest, path, location=location)
    return PushedBlob(blob.digest, blob.descriptor.size, "copied", bytes_sent=sent, mounted_from=None)
