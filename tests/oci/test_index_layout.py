"""Image indexes and referrers without a registry: canonical bytes, a layout holding an index and its
artifacts, read back by kiln (``read_stored``) and by skopeo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.oci.oci_support import run, tool
from tests.oci.registry.images import assemble, layer

from kiln.oci.blobstore import BlobStore
from kiln.oci.index import assemble_index, parse_platform, platform_text
from kiln.oci.layout import write_index_layout
from kiln.oci.referrers import EMPTY_JSON, MEDIA_EMPTY, artifact, merge_referrers, referrers_tag
from kiln.oci.stored import read_stored

AMD = {"os": "linux", "architecture": "amd64"}
ARM = {"os": "linux", "architecture": "arm64", "variant": "v8"}


def _images(tmp_path: Path):  # type: ignore[no-untyped-def]
    return (
        assemble(tmp_path, [layer(tmp_path, {"a": b"amd"})]),
        assemble(tmp_path, [layer(tmp_path, {"b": b"arm"})]),
    )


def test_an_index_is_canonical_and_ordered_as_given(tmp_path: Path) -> None:
    amd, arm = _images(tmp_path)
    index = assemble_index([(amd, AMD), (arm, ARM)])
    assert index.manifest == assemble_index([(amd, dict(AMD)), (arm, dict(ARM))]).manifest
    body = json.loads(index.manifest)
    assert [m["platform"] for m in body["manifests"]] == [AMD, ARM]
    assert index.manifest == json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert platform_text(ARM) == "linux/arm64/v8" and parse_platform("linux/arm64/v8") == ARM
    with pytest.raises(ValueError, match="platform linux/amd64 appears twice"):
        assemble_index([(amd, AMD), (arm, AMD)])


def test_the_fallback_tag_index_adds_each_artifact_once(tmp_path: Path) -> None:
    amd, _ = _images(tmp_path)
    store = BlobStore(tmp_path / "store")
    empty = store.put_bytes(EMPTY_JSON, MEDIA_EMPTY)
    sbom = artifact(
        amd.manifest_descriptor, "application/vnd.cyclonedx+json", store.put_bytes(b"{}", "x"), empty
    )
    first = merge_referrers(None, [sbom])
    assert merge_referrers(first, [sbom]) == first
    assert json.loads(first)["manifests"][0]["artifactType"] == "application/vnd.cyclonedx+json"
    assert referrers_tag(amd.digest) == "sha256-" + amd.digest[7:]


def test_a_layout_holds_the_index_every_image_and_the_artifacts(tmp_path: Path) -> None:
    amd, arm = _images(tmp_path)
    index = assemble_index([(amd, AMD), (arm, ARM)])
    store = BlobStore(tmp_path / "store")
    empty = store.put_bytes(EMPTY_JSON, MEDIA_EMPTY)
    sboms = [
        artifact(i.manifest_descriptor, "application/vnd.cyclonedx+json", store.put_bytes(d, "x"), empty)
        for i, d in ((amd, b'{"a":1}'), (arm, b'{"b":2}'))
    ]
    layout = tmp_path / "layout"

    write_index_layout(index, layout, ref_name="1", image_name="team/iris:1", referrers=sboms)

    stored = read_stored(layout, "1")
    assert stored.index is not None and stored.index.manifest == index.manifest
    assert [i.digest for i, _ in stored.images] == [amd.digest, arm.digest]
    assert [a.digest for a in stored.referrers] == [a.digest for a in sboms]
    raw = json.loads(run(tool("skopeo"), "inspect", "--raw", f"oci:{layout}:1"))
    assert raw == json.loads(index.manifest)
    copied = tmp_path / "copied"
    run(tool("skopeo"), "--override-arch", "arm64", "copy", "--quiet", f"oci:{layout}:1", f"oci:{copied}:x")
    assert json.loads((copied / "index.json").read_text())["manifests"][0]["digest"] == arm.digest
