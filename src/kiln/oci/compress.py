"""Deterministic gzip, compressed on every core: the same input gives the same bytes, whatever the core count.

The input is cut into fixed 1 MiB blocks; each block is deflated on its own (zlib releases the
GIL), primed with the last 32 KiB of the block before it so matches still reach back, and ended
with a sync flush (the last one with a final block), as pigz does. A block's bytes depend only on
its own data and its predecessor's tail, never on scheduling, so the output is one valid gzip
member that is identical for 1 or 16 threads. The header has no name, mtime 0 and OS "unknown";
the level is the caller's. At most a few blocks are in memory at once.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path

BLOCK = 1 << 20
WINDOW = 32 * 1024
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
"""gzip magic, deflate, no flags, mtime 0, no extra flags, OS 255 (unknown)."""


@cache
def fingerprint() -> str:
    """sha256 of this module's source: what a cache of gzipped bytes must be keyed by (another
    block size or framing here gives other bytes for the same input)."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _deflate(block: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
    if dictionary:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, dictionary)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    return compressor.compress(block) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class ParallelGzip:
    """Feed ``write``, then ``finish``; gzip bytes go to ``out`` in order as they are ready."""

    def __init__(self, out: Callable[[bytes], object], level: int, jobs: int | None = None) -> None:
        self._out = out
        self._level = level
        self._jobs = jobs or default_jobs()
        self._pool = ThreadPoolExecutor(self._jobs, thread_name_prefix="kiln-gzip")
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = bytearray()
        self._tail = b""
        self._crc = 0
        self._size = 0
        out(HEADER)

    def write(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= BLOCK:
            block = bytes(self._buffer[:BLOCK])
            del self._buffer[:BLOCK]
            self._submit(block, last=False)

    def finish(self) -> None:
        self._submit(bytes(self._buffer), last=True)
        self._buffer.clear()
        while self._pending:
            self._out(self._pending.popleft().result())
        self._out(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))
        self._pool.shutdown()

    def close(self) -> None:
        """Stop without finishing (an error upstream): drop what is queued."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown()

    def _submit(self, block: bytes, *, last: bool) -> None:
        dictionary, self._tail = self._tail, block[-WINDOW:]
        self._pending.append(self._pool.submit(_deflate, block, dictionary, self._level, last))
        while len(self._pending) > 2 * self._jobs:
            self._out(self._pending.popleft().result())
