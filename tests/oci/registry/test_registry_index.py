"""push_index and referrers against a real docker-registry (distribution 2.8: no referrers API, so the
``sha256-<hex>`` fallback tag is what these exercise); read back by kiln and by skopeo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.oci.registry.conftest import repo
from tests.oci.registry.images import assemble, layer
from tests.registry_support import Registry

from kiln.oci.blobstore import BlobStore
from kiln.oci.index import assemble_index
from kiln.oci.referrers import EMPTY_JSON, MEDIA_EMPTY, artifact, referrers_tag
from kiln.oci.registry import RegistryClient, list_referrers, push_image, push_index
from kiln.oci.types import MEDIA_OCI_INDEX

pytestmark = pytest.mark.usefixtures("no_docker_config")

SBOM_TYPE = "application/vnd.cyclonedx+json"


def _skopeo(*args: str) -> str:
    binary = shutil.which("skopeo")
    if binary is None:
        pytest.fail("skopeo is missing: run scripts/setup")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_index_is_pushed_after_each_platform_manifest_and_read_back(
    registry: Registry, tmp_path: Path
) -> None:
    amd = assemble(tmp_path, [layer(tmp_path, {"a": os.urandom(100)})])
    arm = assemble(tmp_path, [layer(tmp_path, {"b": os.urandom(100)})])
    index = assemble_index(
        [(amd, {"os": "linux", "architecture": "amd64"}), (arm, {"os": "linux", "architecture": "arm64"})]
    )
    name = repo("index")
    mark = registry.mark()

    report = push_index(index, f"{registry.host}/{name}:multi")

    puts = [r.path for r in registry.requests(mark) if r.method == "PUT" and "/manifests/" in r.path]
    assert puts == [
        f"/v2/{name}/manifests/{amd.digest}",
        f"/v2/{name}/manifests/{arm.digest}",
        f"/v2/{name}/manifests/{index.digest}",
        f"/v2/{name}/manifests/multi",
    ]
    assert report.digest == index.digest and report.manifests == (amd.digest, arm.digest, index.digest)
    raw = json.loads(
        _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{name}:multi")
    )
    assert raw["mediaType"] == MEDIA_OCI_INDEX
    assert [(m["digest"], m["platform"]["architecture"]) for m in raw["manifests"]] == [
        (amd.digest, "amd64"),
        (arm.digest, "arm64"),
    ]
    copied = tmp_path / "arm64"
    _skopeo(
        "--override-arch", "arm64", "copy", "--quiet", "--src-tls-verify=false",
        f"docker://{registry.host}/{name}:multi", f"oci:{copied}:arm64",
    )  # fmt: skip
    assert json.loads((copied / "index.json").read_text())["manifests"][0]["digest"] == arm.digest


def test_artifacts_refer_to_the_image_through_the_fallback_tag(registry: Registry, tmp_path: Path) -> None:
    image = assemble(tmp_path, [layer(tmp_path, {"a": os.urandom(100)})])
    store = BlobStore(tmp_path / "store")
    empty = store.put_bytes(EMPTY_JSON, MEDIA_EMPTY)
    sbom = artifact(
        image.manifest_descriptor, SBOM_TYPE, store.put_bytes(b'{"bomFormat":"CycloneDX"}', SBOM_TYPE), empty
    )
    other = artifact(
        image.manifest_descriptor,
        "application/vnd.in-toto+json",
        store.put_bytes(b"{}", "application/vnd.in-toto+json"),
        empty,
    )
    name = repo("referrers")

    report = push_image(image, f"{registry.host}/{name}:1", referrers=[sbom])
    again = push_image(image, f"{registry.host}/{name}:1", referrers=[sbom, other])

    assert report.referrers_api is False and again.referrers_api is False  # distribution 2.8
    with RegistryClient(registry.host) as client:
        found = list_referrers(client, name, image.digest)
        only_sbom = list_referrers(client, name, image.digest, SBOM_TYPE)
        served = client.get_manifest(name, sbom.digest)
    assert [(e["digest"], e["artifactType"]) for e in found] == [
        (sbom.digest, SBOM_TYPE),
        (other.digest, "application/vnd.in-toto+json"),
    ]  # each once, in the order pushed
    assert [e["digest"] for e in only_sbom] == [sbom.digest]
    body = json.loads(served.data)
    assert body["subject"]["digest"] == image.digest and body["artifactType"] == SBOM_TYPE
    tag = _skopeo(
        "inspect",
        "--raw",
        "--tls-verify=false",
        f"docker://{registry.host}/{name}:{referrers_tag(image.digest)}",
    )
    assert json.loads(tag)["manifests"][0]["artifactType"] == SBOM_TYPE
