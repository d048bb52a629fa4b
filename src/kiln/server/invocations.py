"""``POST /invocations`` as a plain ASGI endpoint: headers -> body -> predict lane -> JSON answer.

Plain ASGI rather than Starlette's Request/Response because this is the hot path: for a
small model the request objects cost as much as the parsing.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from kiln.server import wording
from kiln.server.content import media_kind
from kiln.server.errors import (
    DEADLINE_EXCEEDED,
    INTERNAL_ERROR,
    REQUEST_LIMIT_EXCEEDED,
    TEMPORARILY_UNAVAILABLE,
    ScoringFailure,
    error_body,
)
from kiln.server.overload import RETRY_AFTER_HEADER, QueueGate
from kiln.server.state import ServerState
from kiln.server.timeout import PredictTimeout

logger = logging.getLogger(__name__)

_JSON_HEADER = (b"content-type", b"application/json")


class ClientGone(Exception):
    """The client disconnected before sending the whole body."""


class Invocations:
    """The scoring endpoint (``POST /invocations`` reaches it without Starlette's router)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.queue = QueueGate(state.settings.max_queue)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, payload = await self._answer(scope, receive)
        except ClientGone:
            return
        except Exception as exc:  # a bug in kiln: still a JSON answer, and the trace in the log
            logger.exception("unhandled error answering POST /invocations")
            status = 500
            payload = error_body(INTERNAL_ERROR, f"internal error in the scoring server: {exc!r}")
        headers = [_JSON_HEADER, (b"content-length", str(len(payload)).encode())]
        if status == 503:
            # Closing the connection sends the retry through a new one, which the least busy
            # worker tends to accept; a kept-alive one would bring it back to this full worker.
            headers.append(RETRY_AFTER_HEADER)
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        state = self.state
        lane = state.lane
        if lane is None:
            return 503, error_body(TEMPORARILY_UNAVAILABLE, "the model is still loading")
        deadline = asyncio.get_running_loop().time() + lane.timeout
        content_type = length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        try:
            kind = media_kind(content_type)
            body = await read_body(receive, length, state.settings.max_body_size)
        except ScoringFailure as exc:
            return exc.status, error_body(exc.error_code, exc.message)
        if not self.queue.enter():
            return 503, self.queue.full_body()
        try:
            return await lane.run(functools.partial(state.score, body, kind), deadline=deadline)
        except PredictTimeout as exc:
            return 504, error_body(DEADLINE_EXCEEDED, f"{wording.TIMEOUT}: {exc}")
        finally:
            self.queue.leave()


class Dispatch:
    """``POST /invocations`` straight to its endpoint; everything else (and lifespan) to Starlette."""

    def __init__(self, app: ASGIApp, invocations: Invocations) -> None:
        self.app = app
        self.invocations = invocations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/invocations" and scope["method"] == "POST":
            await self.invocations(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def read_body(receive: Receive, length: bytes | None, limit: int) -> bytes:
    """The whole request body; ScoringFailure 413 as soon as it is known to exceed ``limit``."""
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(int(length), limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: int, limit: int) -> ScoringFailure:
    return ScoringFailure(
        f"the request body ({size} bytes or more) is larger than the limit of {limit} bytes "
        "(KILN_MAX_BODY_SIZE)",
        status=413,
        error_code=REQUEST_LIMIT_EXCEEDED,
    )
