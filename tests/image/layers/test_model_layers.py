"""The OCI backend's model layers: a layer per large file, one for the rest; a change re-makes its own."""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pytest
from tests.image.test_model_layout import MIB, sized
from tests.oci.oci_support import write_docker_save

from kiln.image.layers.build import MadeLayer, make_layer, model_jobs
from kiln.image.model_files import plan_model_layout
from kiln.oci.blobstore import BlobStore
from kiln.oci.sources import BaseImage, open_base


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


@pytest.fixture
def base(tmp_path: Path, store: BlobStore) -> BaseImage:
    return open_base(f"docker-archive:{write_docker_save(tmp_path / 'base.tar')}", platform=None, store=store)


def model_with_weights(root: Path) -> Path:
    (root / "weights").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    sized(root / "weights" / "a.bin", 2 * MIB, head=os.urandom(4096))
    sized(root / "weights" / "b.bin", 2 * MIB, head=os.urandom(4096))
    return root


def build(model: Path, work: Path, store: BlobStore, base: BaseImage) -> list[MadeLayer]:
    jobs = model_jobs(model, plan_model_layout(model, threshold=MIB), copy=work / "copy")
    return [make_layer(job, store=store, base=base, epoch=0, work=work / "layers") for job in jobs]


def members(layer: MadeLayer) -> dict[str, tuple[int, int]]:
    """Each path in the layer: (mode, size)."""
    assert layer.blob.path is not None
    with gzip.open(layer.blob.path) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        return {info.name: (info.mode, info.size) for info in tar}


def test_a_layer_per_large_file_then_the_small_files(
    tmp_path: Path, store: BlobStore, base: BaseImage
) -> None:
    model = model_with_weights(tmp_path / "m")
    made = build(model, tmp_path / "w1", store, base)
    assert [m.job.name for m in made] == [
        "model file weights/a.bin (2 MiB)",
        "model file weights/b.bin (2 MiB)",
        "model",
    ]
    assert members(made[0]) == {
        "opt": (0o755, 0), "opt/ml": (0o755, 0), "opt/ml/model": (0o755, 0),
        "opt/ml/model/weights": (0o755, 0), "opt/ml/model/weights/a.bin": (0o644, 2 * MIB),
    }  # fmt: skip
    small = members(made[2])
    assert "opt/ml/model/MLmodel" in small and not any(name.endswith(".bin") for name in small)
    # The checked copy links the large files rather than copying them.
    copied = (tmp_path / "w1" / "copy" / "weights" / "a.bin").stat()
    assert copied.st_ino == (model / "weights" / "a.bin").stat().st_ino


def test_a_changed_file_remakes_only_its_layer(tmp_path: Path, store: BlobStore, base: BaseImage) -> None:
    model = model_with_weights(tmp_path / "m")
    first = build(model, tmp_path / "w1", store, base)
    (model / "MLmodel").write_text("flavors: {python_function: {}}\n")
    second = build(model, tmp_path / "w2", store, base)
    assert [m.reused for m in second] == [True, True, False]
    assert [m.blob.digest for m in second[:2]] == [m.blob.digest for m in first[:2]]
    assert second[2].blob.digest != first[2].blob.digest
    with open(model / "weights" / "b.bin", "r+b") as handle:
        handle.write(b"retrained")
    third = build(model, tmp_path / "w3", store, base)
    assert [m.reused for m in third] == [True, False, True]
    assert third[1].blob.digest != second[1].blob.digest


def test_weights_that_do_not_compress_are_stored(tmp_path: Path, store: BlobStore, base: BaseImage) -> None:
    model = model_with_weights(tmp_path / "m")
    with open(model / "weights" / "a.bin", "wb") as handle:  # random: deflate saves nothing
        handle.write(os.urandom(2 * MIB))
    made = build(model, tmp_path / "w", store, base)
    assert [m.job.gzip_level for m in made] == [0, 6, 6]  # b.bin is mostly zeros: it compresses
    assert made[0].blob.descriptor.size > 2 * MIB > 100 * made[1].blob.descriptor.size
    assert members(made[0])["opt/ml/model/weights/a.bin"] == (0o644, 2 * MIB)  # still a gzip stream
