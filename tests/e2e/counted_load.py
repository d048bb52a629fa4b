"""Load that records what happened to every request, for faults injected while it runs.

A few asyncio clients POST one body in a loop over keep-alive HTTP/1.1 connections,
written by hand so that each failure can be told apart: the connection could not be
opened (``refused``: nothing was accepted), it was closed before any byte of an answer
(``closed``: the request may not have been read), it was closed part-way through an
answer (``truncated``), no answer came in time (``timeout``), or an answer came with a
status (``200``, ``502``...). It targets the container's own address, not a published
port: docker's userland proxy would accept every connection and hide refusals.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

REFUSED, CLOSED, TRUNCATED, TIMEOUT = "refused", "closed", "truncated", "timeout"


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent and answered (monotonic seconds), and what happened."""

    start: float
    end: float
    result: str
    """An HTTP status (``"200"``) or one of REFUSED, CLOSED, TRUNCATED, TIMEOUT."""
    reused: bool
    """Sent on a connection that had already carried a request (keep-alive)."""

    @property
    def ok(self) -> bool:
        return self.result == "200"


@dataclass
class Tally:
    """Every outcome of a load run, and the moments marked while it ran."""

    outcomes: list[Outcome] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    def counts(self, outcomes: Iterable[Outcome] | None = None) -> dict[str, int]:
        found = collections.Counter(o.result for o in (self.outcomes if outcomes is None else outcomes))
        return dict(sorted(found.items()))

    def between(self, start: float, end: float = float("inf")) -> list[Outcome]:
        """Requests sent at or after ``start`` and before ``end``."""
        return [o for o in self.outcomes if start <= o.start < end]

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def summary(self, outcomes: Iterable[Outcome] | None = None) -> str:
        """``5,130 requests: 5,127 x 200, 3 x 502``."""
        chosen = list(self.outcomes if outcomes is None else outcomes)
        parts = ", ".join(f"{n:,} x {result}" for result, n in self.counts(chosen).items())
        return f"{len(chosen):,} requests: {parts or 'none'}"


class CountedLoad:
    """``concurrency`` clients POSTing ``body`` to ``host:port`` in a background thread until stopped."""

    def __init__(
        self,
        host: str,
        port: int,
        body: str,
        *,
        concurrency: int = 4,
        path: str = "/invocations",
        timeout: float = 30.0,
    ) -> None:
        self.host, self.port, self.concurrency, self.timeout = host, port, concurrency, timeout
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body.encode())}\r\n\r\n"
        )
        self.request = head.encode() + body.encode()
        self.tally = Tally()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> CountedLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def mark(self, name: str) -> float:
        """Remember this moment as ``name`` (e.g. when a fault was injected); returns it."""
        now = self.tally.marks[name] = time.monotonic()
        return now

    def stop(self) -> Tally:
        """Stop sending; requests in flight finish (or time out) first."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout + 10)
        return self.tally

    async def _main(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.concurrency)))

    async def _client(self) -> None:
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        reused = False
        while not self._stopping.is_set():
            start = time.monotonic()
            if connection is None:
                try:
                    connection = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 1.0)
                except (OSError, asyncio.TimeoutError):
                    self._record(start, REFUSED, reused=False)
                    await asyncio.sleep(0.05)  # a refused client retries at 20/s, not in a tight loop
                    continue
                reused = False
            reader, writer = connection
            result, keep = await self._exchange(reader, writer)
            self._record(start, result, reused=reused)
            reused = True
            if not keep:
                writer.close()
                connection = None
        if connection is not None:
            connection[1].close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, bool]:
        """Send the request, read the answer: ``(result, connection still usable)``."""
        received = 0
        try:
            writer.write(self.request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
            received = len(head)
            status, length, close = _parse_head(head)
            await asyncio.wait_for(reader.readexactly(length), self.timeout)
            return status, not close
        except asyncio.TimeoutError:
            return TIMEOUT, False
        except asyncio.IncompleteReadError as exc:
            return (TRUNCATED if received or exc.partial else CLOSED), False
        except (OSError, asyncio.LimitOverrunError, ValueError):
            return (TRUNCATED if received else CLOSED), False

    def _record(self, start: float, result: str, *, reused: bool) -> None:
        self.tally.outcomes.append(Outcome(start, time.monotonic(), result, reused))


def _parse_head(head: bytes) -> tuple[str, int, bool]:
    """Status, Content-Length and whether the server will close the connection."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)[1]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    return status, int(headers.get("content-length", "0")), headers.get("connection") == "close"
