"""``kiln push SOURCE REF``: an image that already exists, pushed with kiln's registry client.

SOURCE is an OCI layout (``oci:DIR[:TAG]``: one image, or an image index with every platform image,
and the SBOM and provenance artifacts listed beside them), a ``docker save`` tarball
(``docker-archive:FILE[:REF]``), or an image in the Docker engine (``docker-daemon:NAME`` or just
``NAME``: ``docker save``, then pushed like the others; see ``backends/docker/push.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kiln.backends.base import Published
from kiln.backends.docker.cli import engine_cli
from kiln.backends.docker.push import export_image
from kiln.backends.oci import default_store_root
from kiln.backends.publish import Built, PlatformImage, Registry
from kiln.errors import UsageError
from kiln.oci.blobstore import BlobStore
from kiln.oci.index import platform_text
from kiln.oci.reference import parse_reference
from kiln.oci.sources.archive import image_of_archive
from kiln.oci.stored import read_stored
from kiln.oci.transports import existing_location, split_transport
from kiln.progress import LogProgress, Progress


@dataclass(frozen=True)
class PushResult:
    """What ``push`` sent: where, the digest the tag names, each platform's image digest."""

    published: Published
    digest: str
    platforms: tuple[tuple[str, str], ...]
    """``(platform, manifest digest)`` of each image pushed."""
    attached: int
    """How many artifacts (SBOMs, provenance) went with them."""


def push(source: str, reference: str, *, progress: Progress | None = None) -> PushResult:
    """Push the image at ``source`` to ``reference`` (``REGISTRY/REPO:TAG``)."""
    progress = progress or LogProgress()
    ok = False
    try:
        parse_reference(reference)  # refused before any work
        store = BlobStore(default_store_root(os.environ))
        progress.phase(f"reading {source}")
        built = _read(source, reference, store, progress)
        progress.phase(f"pushing to {reference}")
        (published,) = Registry(reference).publish(built, progress)
        digest = built.index.digest if built.index is not None else built.image.digest
        platforms = tuple((platform_text(one.platform), one.image.digest) for one in built.images)
        ok = True
        return PushResult(published, digest, platforms, len(built.referrers))
    finally:
        progress.finish(ok)


def _read(source: str, reference: str, store: BlobStore, progress: Progress) -> Built:
    split = split_transport(source)
    if split is None:
        name = source.removeprefix("docker-daemon:")
        return Built((export_image(engine_cli(), name, store, progress),), reference, 0)
    try:
        location = existing_location(source)
    except UsageError as exc:
        raise UsageError(f"kiln push: nothing at {source!r} ({exc.message})") from exc
    assert location is not None
    if split[0] == "docker-archive":
        image, platform = image_of_archive(location.path, location.ref, store)
        return Built((PlatformImage(image, platform),), reference, 0)
    stored = read_stored(location.path, location.ref)
    images = tuple(
        PlatformImage(
            image, platform, referrers=tuple(a for a in stored.referrers if a.subject.digest == image.digest)
        )
        for image, platform in stored.images
    )
    return Built(images, reference, 0, stored.index)
