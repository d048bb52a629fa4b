"""Blob uploads against a real registry: one PUT for small blobs, PATCH chunks, resume after a lost chunk."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.oci.registry.conftest import repo
from tests.oci.registry.images import assemble, layer
from tests.oci.registry.servers import Fault, FaultProxy
from tests.registry_support import Registry

from kiln.oci.registry import RegistryClient, push_image
from kiln.oci.types import Blob

pytestmark = pytest.mark.usefixtures("no_docker_config")

CHUNK = 64 * 1024


def _nth_patch(n: int, fault: Fault) -> Callable[[str, str], Fault | None]:
    """A proxy rule: the n-th PATCH (1-based) suffers ``fault``; everything else passes."""
    count = 0

    def rule(method: str, path: str) -> Fault | None:
        nonlocal count
        if method != "PATCH":
            return None
        count += 1
        return fault if count == n else None

    return rule


def test_a_blob_that_fits_in_a_chunk_goes_in_one_put(registry: Registry, tmp_path: Path) -> None:
    image = assemble(tmp_path, [layer(tmp_path, {"small": os.urandom(CHUNK // 2)})])
    mark = registry.mark()

    push_image(image, f"{registry.host}/{repo('small')}:1", chunk_size=CHUNK)

    assert registry.patches(mark) == []
    assert len(registry.blob_uploads(mark)) == 2


def test_a_large_blob_goes_in_chunks(registry: Registry, tmp_path: Path) -> None:
    big = layer(tmp_path, {"big": os.urandom(5 * CHUNK)})  # random: gzip keeps it > 5 chunks
    image = assemble(tmp_path, [big])
    mark = registry.mark()

    report = push_image(image, f"{registry.host}/{repo('chunks')}:1", chunk_size=CHUNK)

    chunks = -(-big.descriptor.size // CHUNK)
    assert len(registry.patches(mark)) == chunks == 6
    assert all(r.status == 202 for r in registry.patches(mark))
    assert report.bytes_uploaded == sum(blob.descriptor.size for blob in image.blobs())


def test_an_upload_resumes_after_a_lost_chunk(registry: Registry, tmp_path: Path) -> None:
    """The chunk never reached the registry: ask it where the upload stands, go on from its Range."""
    big = layer(tmp_path, {"big": os.urandom(4 * CHUNK)})
    name = repo("resume")
    mark = registry.mark()

    with FaultProxy(registry.host, _nth_patch(2, "drop-request")).running() as proxy:
        report = push_image(assemble(tmp_path, [big]), f"{proxy.host}/{name}:1", chunk_size=CHUNK)

    assert [what for method, _, what in proxy.seen if method == "PATCH"].count("drop-request") == 1
    pushed = {blob.digest: blob for blob in report.blobs}[big.digest]
    assert pushed.action == "uploaded"
    assert pushed.bytes_sent == big.descriptor.size + CHUNK  # the lost chunk went twice, nothing else
    status_checks = [r for r in registry.requests(mark) if r.method == "GET" and "/blobs/uploads/" in r.path]
    assert [r.status for r in status_checks] == [204]
    assert len(registry.patches(mark)) == -(-big.descriptor.size // CHUNK)  # each chunk arrived once
    _assert_stored(registry, name, big, tmp_path)


def test_an_upload_the_registry_dropped_starts_over(registry: Registry, tmp_path: Path) -> None:
    """The chunk arrived but its answer was lost: distribution then refuses the old upload state
    ("upload resumed at wrong offset": 404 BLOB_UPLOAD_INVALID) and cancels it; kiln starts over once."""
    big = layer(tmp_path, {"big": os.urandom(4 * CHUNK)})
    name = repo("restart")
    mark = registry.mark()

    with FaultProxy(registry.host, _nth_patch(2, "drop-response")).running() as proxy:
        report = push_image(assemble(tmp_path, [big]), f"{proxy.host}/{name}:1", chunk_size=CHUNK)

    pushed = {blob.digest: blob for blob in report.blobs}[big.digest]
    assert pushed.bytes_sent == big.descriptor.size + 2 * CHUNK  # two chunks before the loss, then all
    status_checks = [r for r in registry.requests(mark) if r.method == "GET" and "/blobs/uploads/" in r.path]
    assert [r.status for r in status_checks] == [404]
    _assert_stored(registry, name, big, tmp_path)


def _assert_stored(registry: Registry, name: str, big: Blob, tmp_path: Path) -> None:
    with RegistryClient(registry.host) as client:
        assert client.download_blob(name, big.digest, tmp_path / "back") == big.descriptor.size
    assert big.path is not None
    assert (tmp_path / "back").read_bytes() == big.path.read_bytes()
