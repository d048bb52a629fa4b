"""Outputs: an OCI layout and a docker-archive, byte for byte stable, read back by skopeo and umoci."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from tests.oci.oci_support import run, tiny_image, tool, write_docker_save

from kiln.errors import UsageError
from kiln.oci.archive import repo_tag, save_archive
from kiln.oci.blobstore import BlobStore
from kiln.oci.layout import write_layout
from kiln.oci.sources import BaseImage, open_base
from kiln.oci.types import Image

PLATFORM = {"os": "linux", "architecture": "amd64"}


@pytest.fixture
def base(tmp_path: Path) -> BaseImage:
    store = BlobStore(tmp_path / "store")
    return open_base(f"docker-archive:{write_docker_save(tmp_path / 'base.tar')}", platform=None, store=store)


def image_on(base: BaseImage, tmp_path: Path, text: bytes = b"hi\n") -> Image:
    return tiny_image(
        BlobStore(tmp_path / "store"), base_layers=list(base.layers), base_config=dict(base.config), text=text
    )


def test_layout_is_read_by_skopeo_and_umoci(base: BaseImage, tmp_path: Path) -> None:
    image = image_on(base, tmp_path)
    layout = tmp_path / "layout"
    write_layout(image, layout, ref_name="v1", image_name="kiln-test/hello:v1", platform=PLATFORM)
    inspected = json.loads(run(tool("skopeo"), "inspect", f"oci:{layout}:v1"))
    assert inspected["Digest"] == image.digest
    assert inspected["Layers"] == [layer.digest for layer in image.layers]
    raw = json.loads(run(tool("skopeo"), "inspect", "--raw", f"oci:{layout}:v1"))
    assert raw == json.loads(image.manifest)
    stat = run(tool("umoci"), "stat", "--image", f"{layout}:v1")
    assert all(layer.digest in stat for layer in image.layers)  # umoci lists every layer of the history
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"] == {
        "org.opencontainers.image.ref.name": "v1",
        "io.containerd.image.name": "kiln-test/hello:v1",
    }


def test_layout_keeps_other_images_and_replaces_its_own_ref(base: BaseImage, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    one, two = image_on(base, tmp_path, b"one"), image_on(base, tmp_path, b"two")
    write_layout(one, layout, ref_name="one", platform=PLATFORM)
    write_layout(two, layout, ref_name="two", platform=PLATFORM)
    write_layout(two, layout, ref_name="one", platform=PLATFORM)
    index = json.loads((layout / "index.json").read_text())
    refs = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    assert refs == {"one": two.digest, "two": two.digest}
    assert not [p for p in layout.rglob("*") if p.name.endswith(".tmp")]


def test_layout_refuses_a_directory_that_is_not_one(base: BaseImage, tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty and is not an OCI image layout"):
        write_layout(image_on(base, tmp_path), tmp_path / "docs", ref_name="x", platform=PLATFORM)


def test_the_same_image_gives_the_same_archive_bytes(base: BaseImage, tmp_path: Path) -> None:
    image = image_on(base, tmp_path)
    save_archive(image, tmp_path / "a.tar", tag="kiln-test/hello", platform=PLATFORM)
    save_archive(image, tmp_path / "b.tar", tag="kiln-test/hello", platform=PLATFORM)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert {(m.mtime, m.uid, m.gid, m.uname) for m in tar.getmembers()} == {(0, 0, 0, "")}
    assert names == sorted(names, key=lambda n: (not n.startswith("blobs"), n))
    assert manifest == [
        {
            "Config": f"blobs/sha256/{image.config.digest.split(':')[1]}",
            "RepoTags": ["kiln-test/hello:latest"],
            "Layers": [f"blobs/sha256/{layer.digest.split(':')[1]}" for layer in image.layers],
        }
    ]
    inspected = json.loads(run(tool("skopeo"), "inspect", f"docker-archive:{tmp_path / 'a.tar'}"))
    assert len(inspected["Layers"]) == len(image.layers)


def test_repo_tag_adds_latest_only_when_there_is_no_tag() -> None:
    assert repo_tag("reg:5000/team/model") == "reg:5000/team/model:latest"
    assert repo_tag("reg:5000/team/model:1.0") == "reg:5000/team/model:1.0"
