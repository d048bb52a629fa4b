"""Referrers through the OCI 1.1 referrers API, the path kiln takes with registries that have it (Docker
Hub, GHCR, ECR, Harbor, zot, distribution 3).

No such registry runs on the test machine (Debian's docker-registry is distribution 2.8), so
``ReferrersApi`` adds the API to the real one, as the distribution spec words it: a proxy that
forwards everything, answers the PUT of a manifest with a ``subject`` with ``OCI-Subject: <subject
digest>``, and serves ``GET /v2/<name>/referrers/<digest>`` (an image index of the artifacts'
descriptors, ``artifactType`` filter and ``OCI-Filters-Applied``) from the manifests it saw. kiln
must then use the API: no ``sha256-<hex>`` fallback tag is written, and ``list_referrers`` reads the
API."""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.oci.registry.conftest import repo
from tests.oci.registry.images import assemble, layer
from tests.oci.registry.servers import _Quiet, forward, serving
from tests.registry_support import Registry

from kiln.oci.blobstore import BlobStore
from kiln.oci.referrers import EMPTY_JSON, MEDIA_EMPTY, artifact, referrers_tag
from kiln.oci.registry import RegistryClient, list_referrers, push_image
from kiln.oci.types import MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST

pytestmark = pytest.mark.usefixtures("no_docker_config")

SBOM_TYPE = "application/vnd.cyclonedx+json"
IN_TOTO = "application/vnd.in-toto+json"
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/?]+)$")
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>sha256:[0-9a-f]{64})$")


@dataclass
class ReferrersApi:
    """The real registry at ``target`` with the referrers API in front of it."""

    target: str
    host: str = ""
    index: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    """(repository, subject digest) -> the descriptors of the artifacts that name it."""
    listed: list[str] = field(default_factory=list)
    """The referrers API paths asked for."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def running(self) -> Iterator[ReferrersApi]:
        with serving(_ReferrersHandler, self) as server:
            self.host = f"127.0.0.1:{server.server_address[1]}"
            yield self


class _ReferrersHandler(_Quiet):
    def _forward(self) -> None:
        owner: ReferrersApi = self.owner
        path = urllib.parse.urlsplit(self.path)
        asked = _REFERRERS.match(path.path)
        if asked and self.command == "GET":
            self._referrers(owner, asked["name"], asked["digest"], urllib.parse.parse_qs(path.query))
            return
        body = self.body()
        status, data, out = forward(owner.target, self, body)
        put = _MANIFEST.match(path.path)
        if put and self.command == "PUT" and status == 201:
            subject = self._remember(owner, put["name"], body, out.get("Docker-Content-Digest", ""))
            if subject:
                out["OCI-Subject"] = subject
        self.answer(status, data, out)

    def _remember(self, owner: ReferrersApi, name: str, body: bytes, digest: str) -> str | None:
        manifest = json.loads(body)
        subject = (manifest.get("subject") or {}).get("digest")
        if not subject:
            return None
        descriptor = {
            "mediaType": manifest.get("mediaType", MEDIA_OCI_MANIFEST),
            "digest": digest,
            "size": len(body),
            "artifactType": manifest.get("artifactType") or manifest["config"]["mediaType"],
            **({"annotations": manifest["annotations"]} if manifest.get("annotations") else {}),
        }
        with owner.lock:
            known = owner.index.setdefault((name, subject), [])
            if all(d["digest"] != digest for d in known):
                known.append(descriptor)
        return str(subject)

    def _referrers(self, owner: ReferrersApi, name: str, digest: str, query: dict[str, list[str]]) -> None:
        owner.listed.append(self.path)
        with owner.lock:
            found = list(owner.index.get((name, digest), []))
        headers = {"Content-Type": MEDIA_OCI_INDEX}
        wanted = query.get("artifactType")
        if wanted:
            found = [d for d in found if d["artifactType"] in wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": found}
        self.answer(200, json.dumps(index).encode(), headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


@pytest.fixture
def referrers_api(registry: Registry) -> Iterator[ReferrersApi]:
    with ReferrersApi(registry.host).running() as proxy:
        yield proxy


def test_a_registry_with_the_referrers_api_lists_the_artifacts_itself(
    referrers_api: ReferrersApi, registry: Registry, tmp_path: Path
) -> None:
    image = assemble(tmp_path, [layer(tmp_path, {"a": os.urandom(100)})])
    store = BlobStore(tmp_path / "store")
    empty = store.put_bytes(EMPTY_JSON, MEDIA_EMPTY)
    sbom = artifact(
        image.manifest_descriptor, SBOM_TYPE, store.put_bytes(b'{"bomFormat":"CycloneDX"}', SBOM_TYPE), empty
    )
    statement = artifact(image.manifest_descriptor, IN_TOTO, store.put_bytes(b"{}", IN_TOTO), empty)
    name = repo("referrers-api")

    report = push_image(image, f"{referrers_api.host}/{name}:1", referrers=[sbom, statement])

    assert report.referrers_api is True
    with RegistryClient(referrers_api.host) as client:
        found = list_referrers(client, name, image.digest)
        only_sbom = list_referrers(client, name, image.digest, SBOM_TYPE)
    assert [(e["digest"], e["artifactType"]) for e in found] == [
        (sbom.digest, SBOM_TYPE),
        (statement.digest, IN_TOTO),
    ]
    assert [e["digest"] for e in only_sbom] == [sbom.digest]
    assert referrers_api.listed == [
        f"/v2/{name}/referrers/{image.digest}",
        f"/v2/{name}/referrers/{image.digest}?artifactType={urllib.parse.quote(SBOM_TYPE, safe='')}",
    ]
    with RegistryClient(registry.host) as direct:  # the registry itself: no fallback tag was written
        assert direct.head_manifest(name, referrers_tag(image.digest)) is None
        assert direct.head_manifest(name, sbom.digest) is not None
