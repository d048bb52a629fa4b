"""The Docker backend's supply chain: its image carries the same SBOM at the same path as ``--backend
oci``'s (valid CycloneDX, listing exactly what the image holds), the same bytes when the image is built
again from an empty cache, and ``--push`` attaches the SBOM and the provenance as referrers of the
pushed manifest (distribution 2.8 has no referrers API: the ``sha256-<digest>`` tag)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e.conftest import Built, Images
from tests.e2e.sbom_support import assert_lists_the_image, in_image
from tests.oci.oci_support import run, tool
from tests.registry_support import Registry, registry  # noqa: F401

from kiln import contract
from kiln.backends.docker.builder import DockerBuilder
from kiln.oci.registry import RegistryClient, list_referrers

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CYCLONEDX = "application/vnd.cyclonedx+json"
IN_TOTO = "application/vnd.in-toto+json"
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


@pytest.fixture(scope="module")
def built(images: Images, model_dir: Callable[[str], Path]) -> Built:
    return images.build("supply-docker", "-m", str(model_dir("sklearn_iris")), env=EPOCH)


def test_the_image_carries_an_sbom_of_exactly_what_it_holds(
    docker_builder: DockerBuilder, built: Built
) -> None:
    sbom = assert_lists_the_image(docker_builder, built.tag)
    assert f"SBOM: {contract.SBOM_PATH} in the image" in built.stdout
    assert sbom["metadata"]["timestamp"].startswith("2023-11-14T22:13:20")  # SOURCE_DATE_EPOCH
    origins = {
        c["name"]: {p["name"]: p["value"] for p in c.get("properties", ())}.get("kiln:origin")
        for c in sbom["components"]
        if c.get("purl", "").startswith("pkg:deb/")
    }
    assert origins["nginx"] == "added" and origins["libc6"] == "base"
    listed = in_image(docker_builder, built.tag, ["ls", "-l", contract.SBOM_PATH]).split()
    assert listed[0] == "-rw-r--r--" and listed[2:4] == ["root", "root"]


def test_an_empty_cache_gives_the_same_sbom(
    docker_builder: DockerBuilder, images: Images, built: Built, model_dir: Callable[[str], Path]
) -> None:
    again = images.build("supply-docker-again", "-m", str(model_dir("sklearn_iris")), "--no-cache", env=EPOCH)
    first = in_image(docker_builder, built.tag, ["cat", contract.SBOM_PATH])
    assert in_image(docker_builder, again.tag, ["cat", contract.SBOM_PATH]) == first


def test_push_attaches_the_sbom_and_provenance(
    docker_builder: DockerBuilder,
    registry: Registry,  # noqa: F811
    images: Images,
    built: Built,
    model_dir: Callable[[str], Path],
) -> None:
    repository = "kiln-e2e/supply-docker"
    target = f"{registry.host}/{repository}:1"
    pushed = images.build("supply-docker", "-m", str(model_dir("sklearn_iris")), "--push", target, env=EPOCH)
    digest = next(
        line.split()[-1] for line in pushed.stdout.splitlines() if line.startswith("Manifest digest:")
    )
    assert "SBOM and provenance attached to the pushed image" in pushed.stdout
    with RegistryClient(registry.host) as client:
        found = list_referrers(client, repository, digest)
        assert [e["artifactType"] for e in found] == [CYCLONEDX, IN_TOTO]
        artifacts = [
            json.loads(client.get_manifest("kiln-e2e/supply-docker", e["digest"]).data) for e in found
        ]
        sbom, statement = (
            _blob(client, "kiln-e2e/supply-docker", a["layers"][0]["digest"]) for a in artifacts
        )
    assert all(a["subject"]["digest"] == digest for a in artifacts)
    assert sbom.decode() == in_image(docker_builder, built.tag, ["cat", contract.SBOM_PATH])
    provenance = json.loads(statement)
    assert provenance["subject"][0]["digest"]["sha256"] == digest.removeprefix("sha256:")
    definition = provenance["predicate"]["buildDefinition"]
    assert [d["name"] for d in definition["resolvedDependencies"]] == ["model", "lock", "base image", "kiln"]
    tag = f"sha256-{digest.removeprefix('sha256:')}"  # the referrers tag schema, as skopeo sees it
    listed = json.loads(
        run(
            tool("skopeo"),
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{target.rsplit(':', 1)[0]}:{tag}",
        )
    )
    assert [m["digest"] for m in listed["manifests"]] == [e["digest"] for e in found]


def _blob(client: RegistryClient, repository: str, digest: str) -> bytes:
    with client.open_blob(repository, digest) as chunks:
        return b"".join(chunks)
