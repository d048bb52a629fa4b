"""The scoring endpoints as plain ASGI: headers -> body -> predict lane -> JSON answer.

``ScoringEndpoint`` holds what every scoring request goes through, whatever its protocol:
the body limit (413), the worker's queue limit (503 with ``Retry-After``), the predict lane
and its request timeout (504). A ``ScoringProtocol`` says what is particular: the checks
on the request's head, the work run on the lane, and the shape of an error body. MLflow's
``POST /invocations`` is ``MlflowScoring``; the Open Inference Protocol's infer is in
``kiln.server.v2.routes``. A ``"stream": true`` request to a model with ``predict_stream`` is
answered as server-sent events by ``kiln.server.streaming``.

Plain ASGI rather than Starlette's Request/Response because this is the hot path: for a
small model the request objects cost as much as the parsing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from kiln.server import wording
from kiln.server.batching import Batcher, ScoreWork
from kiln.server.content import media_kind
from kiln.server.errors import (
    DEADLINE_EXCEEDED,
    INTERNAL_ERROR,
    REQUEST_LIMIT_EXCEEDED,
    TEMPORARILY_UNAVAILABLE,
    ScoringFailure,
    error_body,
)
from kiln.server.overload import RETRY_AFTER_HEADER
from kiln.server.state import ServerState
from kiln.server.streaming import Streams
from kiln.server.timeout import PredictTimeout

logger = logging.getLogger(__name__)

_JSON_HEADER = (b"content-type", b"application/json")

Work = Callable[[bytes], tuple[int, bytes]]
"""A request's work on the predict lane: its body -> status and JSON answer."""


class ScoringProtocol(Protocol):
    def prepare(self, scope: Scope) -> Work:
        """Check the request's head (ScoringFailure to refuse it); the work its body gets."""

    def error(self, status: int, error_code: str, message: str) -> bytes:
        """The JSON body of an error answer."""


class ClientGone(Exception):
    """The client disconnected before sending the whole body."""


class ScoringEndpoint:
    """One protocol's scoring endpoint, sharing the worker's queue limit and predict lane."""

    def __init__(self, state: ServerState, protocol: ScoringProtocol, streams: Streams | None = None) -> None:
        self.state = state
        self.protocol = protocol
        self.streams = streams
        """``"stream": true`` requests (kiln.server.streaming); None: this protocol has no streams."""
        batching = isinstance(protocol, MlflowScoring) and state.settings.max_batch_size > 1
        self.batcher = Batcher(state) if batching else None
        """Adaptive micro-batching (kiln.server.batching; opt-in): MLflow's protocol only."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            answer = await self._answer(scope, receive, send)
            if answer is None:  # streamed: the events are sent
                return
            status, payload = answer
        except ClientGone:
            return
        except Exception as exc:  # a bug in kiln: still a JSON answer, and the trace in the log
            logger.exception("unhandled error answering POST %s", scope["path"])
            status = 500
            message = f"internal error in the scoring server: {exc!r}"
            payload = self.protocol.error(500, INTERNAL_ERROR, message)
        headers = [_JSON_HEADER, (b"content-length", str(len(payload)).encode())]
        if status == 503:
            # Closing the connection sends the retry through a new one, which the least busy
            # worker tends to accept; a kept-alive one would bring it back to this full worker.
            headers.append(RETRY_AFTER_HEADER)
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> tuple[int, bytes] | None:
        state, error = self.state, self.protocol.error
        lane = state.lane
        if lane is None:
            return 503, error(503, TEMPORARILY_UNAVAILABLE, "the model is still loading")
        deadline = asyncio.get_running_loop().time() + lane.timeout
        try:
            work = self.protocol.prepare(scope)
            body = await read_body(receive, header(scope, b"content-length"), state.settings.max_body_size)
            streams = self.streams
            stream = None if streams is None else streams.asked(scope, body)
        except ScoringFailure as exc:
            return exc.status, error(exc.status, exc.error_code, exc.message)
        queue = state.queue
        if not queue.enter():
            return 503, error(503, TEMPORARILY_UNAVAILABLE, queue.full_message())
        try:
            if streams is not None and stream is not None:
                return await streams.answer(stream, receive, send, deadline=deadline)
            if self.batcher is not None:
                return await self.batcher.run(work, body, deadline=deadline)
            return await lane.run(functools.partial(work, body), deadline=deadline)
        except PredictTimeout as exc:
            return 504, error(504, DEADLINE_EXCEEDED, f"{wording.TIMEOUT}: {exc}")
        finally:
            queue.leave()


class MlflowScoring:
    """MLflow's ``POST /invocations``: JSON, CSV or parquet by Content-Type; MLflow's error bodies."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def prepare(self, scope: Scope) -> Work:
        content_type = header(scope, b"content-type")
        kind = media_kind(None if content_type is None else content_type.decode("latin-1"))
        return ScoreWork(self.state, kind)

    def error(self, status: int, error_code: str, message: str) -> bytes:
        return error_body(error_code, message)


class Dispatch:
    """``POST /invocations`` straight to its endpoint; everything else (and lifespan) to Starlette."""

    def __init__(self, app: ASGIApp, invocations: ScoringEndpoint) -> None:
        self.app = app
        self.invocations = invocations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/invocations" and scope["method"] == "POST":
            await self.invocations(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def header(scope: Scope, name: bytes) -> bytes | None:
    """The value of the request header ``name`` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


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
