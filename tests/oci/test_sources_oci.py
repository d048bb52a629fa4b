"""Base images by transport: a docker save archive, an OCI layout, a real registry; pinned and indexed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.oci.oci_support import BASE_TAG, tiny_image, write_docker_save
from tests.registry_support import Registry, registry  # noqa: F401

from kiln.errors import BuildError, UsageError
from kiln.image.layers.probe import probe_files
from kiln.oci.blobstore import BlobStore
from kiln.oci.layout import write_layout
from kiln.oci.sources import fetch_layers, open_base


def test_docker_archive_base(tmp_path: Path) -> None:
    archive = write_docker_save(tmp_path / "base.tar")
    store = BlobStore(tmp_path / "store")
    base = open_base(f"docker-archive:{archive}", platform=None, store=store)
    assert base.name == BASE_TAG and base.os_arch == "linux/amd64"
    assert [layer.diff_id for layer in base.layers] == base.config["rootfs"]["diff_ids"]
    assert all(layer.path is not None and layer.path.is_file() for layer in base.layers)
    assert base.files.read("/etc/hostname") == b"tiny\n" and base.files.entry("/tmp").mode == 0o1777  # type: ignore[union-attr]
    stamps = [layer.path.stat().st_mtime_ns for layer in base.layers]  # type: ignore[union-attr]
    again = open_base(f"docker-archive:{archive}", platform=None, store=store)
    assert again.digest == base.digest and again.layers == base.layers  # pinned the same way each time
    assert [layer.path.stat().st_mtime_ns for layer in again.layers] == stamps  # type: ignore[union-attr]
    fresh = open_base(f"docker-archive:{archive}", platform=None, store=BlobStore(tmp_path / "other"))
    assert fresh.digest == base.digest  # the same bytes from an empty cache


def test_docker_archive_with_several_images_needs_a_ref(tmp_path: Path) -> None:
    archive = write_docker_save(tmp_path / "two.tar", tags=["a/one:1", "a/two:2"])
    store = BlobStore(tmp_path / "store")
    assert open_base(f"docker-archive:{archive}:a/two:2", platform=None, store=store).name == "a/two:2"
    with pytest.raises(UsageError, match="has no image tagged 'a/three:3'"):
        open_base(f"docker-archive:{archive}:a/three:3", platform=None, store=store)


def test_oci_layout_base_is_pinned_by_its_manifest(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    first = open_base(
        f"docker-archive:{write_docker_save(tmp_path / 'base.tar')}", platform=None, store=store
    )
    image = tiny_image(store, base_layers=list(first.layers), base_config=dict(first.config))
    write_layout(image, tmp_path / "layout", ref_name="v1", platform={"os": "linux", "architecture": "amd64"})
    base = open_base(f"oci:{tmp_path / 'layout'}:v1", platform=None, store=store)
    assert base.digest == image.digest and base.name == "v1"
    assert base.files.read("/srv/hello.txt") == b"hi\n"
    assert open_base(f"oci:{tmp_path / 'layout'}", platform=None, store=store).digest == image.digest
    with pytest.raises(UsageError, match="no image named 'v2' \\(it has: v1\\)"):
        open_base(f"oci:{tmp_path / 'layout'}:v2", platform=None, store=store)


def test_registry_base_streams_its_layers_once(tmp_path: Path, registry: Registry) -> None:  # noqa: F811
    from kiln.oci.registry import push_image

    store = BlobStore(tmp_path / "store")
    local = open_base(
        f"docker-archive:{write_docker_save(tmp_path / 'base.tar')}", platform=None, store=store
    )
    image = tiny_image(store, base_layers=list(local.layers), base_config=dict(local.config))
    reference = f"{registry.host}/kiln-test/sources-base:1"
    push_image(image, reference)
    remote_store = BlobStore(tmp_path / "remote-store")
    mark = registry.mark()
    base = open_base(reference, platform="linux/amd64", store=remote_store)
    assert base.digest == image.digest and base.name == reference
    assert all(
        layer.path is None and layer.source == f"{registry.host}/kiln-test/sources-base"
        for layer in base.layers
    )
    assert base.files.read("/etc/hostname") == b"tiny\n"  # kept while indexing
    blob_gets = [r for r in registry.requests(mark) if r.method == "GET" and "/blobs/sha256:" in r.path]
    assert len(blob_gets) == 1 + len(image.layers)  # the config, then each layer once, to index it
    assert not list((remote_store.root / "blobs").glob("sha256/*"))  # and no layer kept
    mark = registry.mark()
    assert base.files.read("/srv/hello.txt") == b"hi\n"  # not kept: its layer is streamed again
    assert [r.path for r in registry.requests(mark) if "/blobs/" in r.path] == [
        f"/v2/kiln-test/sources-base/blobs/{image.layers[-1].digest}"
    ]
    mark = registry.mark()
    again = open_base(reference, platform="linux/amd64", store=remote_store)
    assert [r.path for r in registry.requests(mark) if "/blobs/" in r.path] == [
        f"/v2/kiln-test/sources-base/blobs/{image.config.digest}"
    ]
    local_copy = fetch_layers(again, remote_store)  # an output that holds the whole image downloads them
    assert all(layer.path is not None and layer.path.is_file() for layer in local_copy.layers)


def test_probe_reads_the_filesystem(tmp_path: Path) -> None:
    base = open_base(
        f"docker-archive:{write_docker_save(tmp_path / 'base.tar')}", platform=None, store=BlobStore(tmp_path)
    )
    info = probe_files(
        "tiny", image_id=base.config_digest, os_arch=base.os_arch, config=base.config, files=base.files
    )
    assert (info.python, info.has_apt, info.has_nginx, info.os_release) == (None, False, False, "debian:12")


def test_transport_and_archive_errors(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    with pytest.raises(UsageError, match="the docker-daemon transport is not supported"):
        open_base("docker-daemon:python:3.11", platform=None, store=store)
    with pytest.raises(UsageError, match="no such file"):
        open_base(f"docker-archive:{tmp_path / 'missing.tar'}", platform=None, store=store)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(BuildError, match="is not a readable docker-archive"):
        open_base(f"docker-archive:{tmp_path / 'junk.tar'}", platform=None, store=store)
    arm = write_docker_save(tmp_path / "arm.tar", architecture="arm64")
    with pytest.raises(BuildError, match="is for linux/arm64, not --platform linux/amd64"):
        open_base(f"docker-archive:{arm}", platform="linux/amd64", store=store)
    (tmp_path / "empty-layout").mkdir()
    (tmp_path / "empty-layout" / "index.json").write_text(json.dumps({"manifests": []}))
    with pytest.raises(UsageError, match="holds 0 images"):
        open_base(f"oci:{tmp_path / 'empty-layout'}", platform=None, store=store)
