"""Artifacts that refer to an image (OCI 1.1): an SBOM or a provenance statement attached to a manifest.

An artifact is an image manifest with an ``artifactType``, the empty config
(``application/vnd.oci.empty.v1+json``, ``{}``), one layer holding the document, and a
``subject``: the descriptor of the manifest it is about. Registries with the referrers API
(``GET /v2/<name>/referrers/<digest>``) index it when it is pushed; for the others the
distribution spec's *referrers tag schema* applies: an image index tagged
``sha256-<hex of the subject digest>`` lists the artifacts, and the client that pushes one
updates it (``merge_referrers``). Everything here is pure: bytes in, bytes out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kiln.oci.blobstore import hex_of
from kiln.oci.canonical import canonical_json
from kiln.oci.index import index_json
from kiln.oci.manifest import describe
from kiln.oci.types import MEDIA_OCI_MANIFEST, Blob, Descriptor

MEDIA_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DESCRIPTOR = describe(EMPTY_JSON, MEDIA_EMPTY)
"""The config of every artifact manifest (``sha256:44136fa3...``, 2 bytes)."""


@dataclass(frozen=True)
class Artifact:
    """An artifact manifest about ``subject``, and its blobs (the empty config, then the document)."""

    manifest: bytes
    descriptor: Descriptor
    artifact_type: str
    subject: Descriptor
    blobs: tuple[Blob, ...]
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    def entry(self) -> dict[str, Any]:
        """This artifact as the referrers API (and the fallback tag's index) lists it."""
        entry = self.descriptor.to_json()
        entry["artifactType"] = self.artifact_type
        if self.annotations:
            entry["annotations"] = dict(self.annotations)
        return entry


def artifact(
    subject: Descriptor,
    artifact_type: str,
    document: Blob,
    empty: Blob,
    annotations: Mapping[str, str] | None = None,
) -> Artifact:
    """The artifact manifest attaching ``document`` (a stored blob) to ``subject``.

    ``empty`` is the stored empty config (``EMPTY_DESCRIPTOR``); ``annotations`` go on the manifest
    and its referrers entry (``org.opencontainers.image.created`` keeps them reproducible only when
    it is ``SOURCE_DATE_EPOCH``'s)."""
    if empty.descriptor != EMPTY_DESCRIPTOR:
        raise ValueError(f"artifact config must be the empty descriptor, got {empty.descriptor}")
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_DESCRIPTOR.to_json(),
        "layers": [document.descriptor.to_json()],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
    }
    notes = dict(sorted((annotations or {}).items()))
    if notes:
        body["annotations"] = notes
    data = canonical_json(body)
    return Artifact(
        data,
        describe(data, MEDIA_OCI_MANIFEST),
        artifact_type,
        subject,
        (empty, document),
        tuple(notes.items()),
    )


def referrers_tag(digest: str) -> str:
    """The fallback tag that lists the referrers of ``digest``: ``sha256-<hex>``."""
    return "sha256-" + hex_of(digest)


def merge_referrers(existing: bytes | None, artifacts: Sequence[Artifact]) -> bytes:
    """The fallback tag's index: the entries it had (``existing``, None for none) plus ``artifacts``,
    each digest once, the old entries first (the spec's read-modify-write of that tag)."""
    entries: list[dict[str, Any]] = []
    if existing is not None:
        try:
            entries = [dict(item) for item in json.loads(existing).get("manifests") or []]
        except (ValueError, AttributeError, TypeError):
            entries = []  # not an index we can extend: replace it, as the spec allows
    have = {str(item.get("digest")) for item in entries}
    entries += [a.entry() for a in artifacts if a.digest not in have]
    return index_json(entries)


def listed(index: bytes, artifact_type: str | None = None) -> list[dict[str, Any]]:
    """The entries of a referrers index (API answer or fallback tag), of ``artifact_type`` when given."""
    entries = [dict(item) for item in json.loads(index).get("manifests") or []]
    return [e for e in entries if artifact_type is None or e.get("artifactType") == artifact_type]
