"""The queue limit: a worker holds at most ``max_queue`` scoring requests; beyond it, 503 at once.

A worker predicts one request at a time (the predict lane); the others wait in its queue.
Past the point where the lane is always busy, a longer queue adds only waiting: without
a limit, requests pile up until they reach the request timeout (504) or the client gives
up. With one, a request that finds ``max_queue`` requests already waiting or being
predicted in its worker is answered at once with 503 ``TEMPORARILY_UNAVAILABLE`` and
``Retry-After``, so a client or load balancer can go elsewhere or back off, and the
admitted requests wait at most ``max_queue`` predictions.

A scoring request (``/invocations`` or a V2 infer) counts from the moment its body has been
read to the moment its answer is ready: a client uploading slowly holds no place in the
queue. ``/ping``, ``/health``, ``/version``, ``/metrics`` and the V2 health and metadata
endpoints never count and are never refused, so health probes keep answering under any load.
The design, and how the default was chosen: docs/scoring.md.
"""

from __future__ import annotations

RETRY_AFTER_SECONDS = 1
"""The ``Retry-After`` of every 503: long enough for the queue to move, short enough not to idle."""
RETRY_AFTER_HEADER = (b"retry-after", str(RETRY_AFTER_SECONDS).encode("ascii"))


class QueueGate:
    """Counts the requests a worker holds; refuses one more beyond ``limit`` (0: never refuses).

    Used from the worker's event loop only, so a plain counter is enough.
    """

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def enter(self) -> bool:
        """Take a place in the queue; False (and nothing taken) when it is full."""
        if self.limit and self.held >= self.limit:
            return False
        self.held += 1
        return True

    def leave(self) -> None:
        self.held -= 1

    def full_message(self) -> str:
        """What a refused request is told."""
        return (
            f"this worker already holds {self.limit} scoring requests (KILN_MAX_QUEUE={self.limit}); "
            f"retry after {RETRY_AFTER_SECONDS} s"
        )
