"""Referrers on a registry: put artifact manifests that name a ``subject``, and list them back.

A registry with the OCI 1.1 referrers API answers the manifest PUT with an ``OCI-Subject``
header and lists the artifact at ``GET /v2/<name>/referrers/<digest>`` by itself. One without it
(distribution 2.8, Debian's ``docker-registry``, many older registries) stores the artifact as a
plain manifest; then kiln does what the distribution spec's referrers tag schema asks: it reads the
index tagged ``sha256-<hex>``, adds the artifact and puts it back. ``list_referrers`` reads the API
when the registry has it, else that tag.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kiln.oci.referrers import Artifact, listed, merge_referrers, referrers_tag
from kiln.oci.registry.client import RegistryClient
from kiln.oci.types import MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST

log = logging.getLogger(__name__)


def put_artifacts(client: RegistryClient, repository: str, artifacts: Sequence[Artifact]) -> bool:
    """PUT each artifact manifest (its blobs must be there); update the fallback tag of each subject
    the registry did not index itself. True when the registry has the referrers API."""
    fallback: dict[str, list[Artifact]] = {}
    api = True
    for item in artifacts:
        what = f"put artifact manifest {item.digest} ({item.artifact_type})"
        url = client.session.url(repository, "manifests", item.digest)
        response = client.session.request(
            what, repository, "PUT", url, headers={"Content-Type": MEDIA_OCI_MANIFEST},
            content=item.manifest, push=True,
        )  # fmt: skip
        client.session.check(response, what, repository, 201)
        if response.headers.get("oci-subject") != item.subject.digest:
            api = False
            fallback.setdefault(item.subject.digest, []).append(item)
    for subject, items in fallback.items():
        tag = referrers_tag(subject)
        existing = _get_tag(client, repository, tag)
        merged = merge_referrers(existing, items)
        if merged != existing:
            log.debug("registry %s has no referrers API: updating tag %s", client.registry, tag)
            client.put_manifest(repository, tag, merged, MEDIA_OCI_INDEX)
    return api


def list_referrers(
    client: RegistryClient, repository: str, digest: str, artifact_type: str | None = None
) -> list[dict[str, Any]]:
    """The artifacts that refer to ``digest`` (the referrers API, else the fallback tag's index)."""
    what = f"list referrers of {digest}"
    url = client.session.url(repository, "referrers", digest)
    params = {"artifactType": artifact_type} if artifact_type else None
    response = client.session.request(
        what, repository, "GET", url, params=params, headers={"Accept": MEDIA_OCI_INDEX}
    )
    if response.status_code == 200 and "json" in response.headers.get("content-type", ""):
        return listed(response.content, artifact_type)
    if response.status_code not in (404, 405):
        client.session.check(response, what, repository, 200)
    found = _get_tag(client, repository, referrers_tag(digest))
    return [] if found is None else listed(found, artifact_type)


def _get_tag(client: RegistryClient, repository: str, tag: str) -> bytes | None:
    if client.head_manifest(repository, tag) is None:
        return None
    return client.get_manifest(repository, tag, accept=MEDIA_OCI_INDEX).data
