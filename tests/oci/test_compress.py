"""Parallel gzip: valid gzip whose bytes do not depend on the number of threads."""

from __future__ import annotations

import gzip
import random
import subprocess

import pytest

from kiln.oci.compress import BLOCK, ParallelGzip


def compress(data: bytes, jobs: int, chunk: int = 65536) -> bytes:
    out: list[bytes] = []
    gz = ParallelGzip(out.append, 6, jobs=jobs)
    for start in range(0, len(data), chunk):
        gz.write(data[start : start + chunk])
    gz.finish()
    return b"".join(out)


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, 3 * BLOCK + 12345])
def test_same_bytes_for_any_thread_count_and_write_size(size: int) -> None:
    rng = random.Random(size)
    words = [bytes(rng.choice(b"abcdefgh") for _ in range(rng.randint(1, 9))) for _ in range(500)]
    data = b" ".join(rng.choice(words) for _ in range(size // 5 + 1))[:size]
    one = compress(data, jobs=1)
    assert compress(data, jobs=4, chunk=7777) == one
    assert gzip.decompress(one) == data
    assert subprocess.run(["gzip", "-t"], input=one, check=False).returncode == 0  # the gzip tool agrees
    if size > 2 * BLOCK:  # matches reach across blocks: barely worse than one zlib stream
        assert len(one) < len(gzip.compress(data, compresslevel=6)) * 1.02
