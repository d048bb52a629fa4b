"""Server-sent events for models with ``predict_stream``, asked for MLflow's way: ``"stream": true``.

MLflow's own streaming endpoints (the agent server, ``mlflow.genai.agent_server``; the
Databricks deployments client's ``predict_stream``, which posts ``{**inputs, "stream": true}``
to ``/invocations``) take a JSON body with ``"stream": true`` next to the usual input, and
answer ``text/event-stream``: one ``data: <chunk as JSON>`` event per chunk, then
``data: [DONE]``. kiln does the same on ``POST /invocations``: the ``stream`` key is taken
out of the body, the rest is parsed as any JSON request (LLM-style ``messages``/``prompt``/
``input``, or a format key with ``params``), and the model's ``PyFuncModel.predict_stream``
gets the data and params. Only ``data:`` lines are written (no ``event:``, ``id:`` or
comment lines): MLflow's deployments client refuses any other line.

* A model whose MLmodel is not ``streamable`` (no ``predict_stream``) answers 400
  ``BAD_REQUEST`` with MLflow's words for it, unless its signature names ``stream`` as an
  input column or a param: then the key is the model's input and the request is answered
  whole, as MLflow's scoring server answers it.
* Anything that fails before the first chunk (a malformed body, schema enforcement, the
  model raising at once) is the ordinary JSON error answer with its status.
* A failure after the first chunk cannot change the status (200 was sent): the stream ends
  with one error event, ``data: {"error_code", "message", "error_class", "sqlstate",
  "error"}`` (the error body of the JSON answers, plus ``error`` -- the message -- which is
  the key MLflow's agent server sends), then ``data: [DONE]``.
* The request timeout bounds the wait for each chunk: the first within
  ``request_timeout`` of the request's arrival (else the usual 504 JSON answer), every
  later one within ``request_timeout`` of asking for it (else the error event with
  ``DEADLINE_EXCEEDED``). A stream that keeps producing is never cut.
* Each chunk is pulled from the model's generator by its own job on the predict lane, so
  other requests to the worker are served between chunks, and a client that disconnects
  stops the generation: no further chunk is pulled and the generator is closed (its
  ``finally`` blocks run) on the lane. The generator runs in a ``contextvars`` context of
  its own, so what MLflow's prediction context sets inside it stays with it.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from kiln.server import wording
from kiln.server.content import media_kind
from kiln.server.errors import BAD_REQUEST, DEADLINE_EXCEEDED, INTERNAL_ERROR, ScoringFailure, from_exception
from kiln.server.parsing import decode_json, parse_json
from kiln.server.serialize import predictions_json
from kiln.server.state import ServerState
from kiln.server.timeout import PredictLane, PredictTimeout

logger = logging.getLogger(__name__)

STREAM_KEY = "stream"
EVENT_STREAM = "text/event-stream"
DONE_EVENT = b"data: [DONE]\n\n"
NOT_STREAMABLE = "This model does not support predict_stream method."
"""MLflow's words (``PyFuncModel._predict_stream``) for a model without ``predict_stream``."""

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # nginx passes each event on as it arrives instead of filling its proxy buffers first.
    (b"x-accel-buffering", b"no"),
]
_NEEDLE = b'"' + STREAM_KEY.encode() + b'"'


def streamable(model: Any) -> bool:
    """Whether MLflow loaded ``model`` with a ``predict_stream`` (its MLmodel says ``streamable``)."""
    flavors = getattr(model.metadata, "flavors", None) or {}
    pyfunc = flavors.get("python_function") or {}
    return pyfunc.get("streamable") is True


def _names_stream(model: Any) -> bool:
    """The signature has an input column or a param called ``stream`` (MLflow's chat signatures do)."""
    metadata = model.metadata
    inputs = metadata.get_input_schema()
    params = metadata.get_params_schema() if hasattr(metadata, "get_params_schema") else None
    names = set(inputs.input_names()) if inputs is not None and inputs.has_input_names() else set()
    names |= {param.name for param in params.params} if params is not None else set()
    return STREAM_KEY in names


class _Stream:
    """A model's chunk iterator with the context it runs in; every method runs on the predict lane."""

    def __init__(self, chunks: Iterator[Any], context: contextvars.Context) -> None:
        self.chunks = chunks
        self.context = context
        self.first: bytes | None = None

    def pull(self) -> bytes | None:
        """The next chunk as an event, or None at the end; what the model raised, raised."""
        return self.context.run(self._next)

    def _next(self) -> bytes | None:
        try:
            chunk = next(self.chunks)
        except StopIteration:
            return None
        try:
            data = predictions_json(chunk, unwrapped=True)
        except TypeError as exc:
            raise ScoringFailure(
                f"a chunk of the model's stream could not be serialised to JSON: {exc}",
                status=500,
                error_code=INTERNAL_ERROR,
            ) from exc
        return b"data: " + data + b"\n\n"

    def close(self) -> None:
        """Stop the generation: the generator's ``finally`` blocks run, nothing more is produced."""
        close = getattr(self.chunks, "close", None)
        if callable(close):
            self.context.run(close)


@dataclass(frozen=True)
class StreamRequest:
    """A JSON body that asked for a stream, without its ``stream`` key."""

    body: dict[str, Any]


class Streams:
    """``"stream": true`` requests to ``POST /invocations``: the check, and the answer as events."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def asked(self, scope: Scope, body: bytes) -> StreamRequest | None:
        """The request if it asks for a stream this model serves; ScoringFailure if it cannot have one."""
        # The common case costs one substring search; a body that holds the string elsewhere (a
        # column named "stream") is decoded here once more, on the event loop, to look.
        if _NEEDLE not in body:
            return None
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), None)
        if content_type is None or media_kind(content_type.decode("latin-1")) != "json":
            return None
        try:
            obj = decode_json(body)
        except ScoringFailure:  # the ordinary path answers it
            return None
        if not isinstance(obj, dict) or obj.get(STREAM_KEY) is not True:
            return None
        predictor = self.state.predictor
        assert predictor is not None
        if streamable(predictor.model):
            return StreamRequest({k: v for k, v in obj.items() if k != STREAM_KEY})
        if _names_stream(predictor.model):
            return None  # the model's own input, as MLflow's scoring server passes it
        raise ScoringFailure(
            f'{NOT_STREAMABLE} The request asked for a stream ("stream": true), but the model\'s '
            "MLmodel is not streamable: its python_function flavour has no predict_stream. Send the "
            'request without "stream": true for the whole answer, or log the model with a '
            "PythonModel that implements predict_stream.",
            error_code=BAD_REQUEST,
        )

    async def answer(
        self, request: StreamRequest, receive: Receive, send: Send, *, deadline: float
    ) -> tuple[int, bytes] | None:
        """Send the events; the JSON error answer instead if it fails before the first chunk.

        PredictTimeout when no first chunk came by ``deadline`` (nothing has been sent then).
        """
        lane = self.state.lane
        assert lane is not None
        opened = await lane.run(lambda: self._open(request), deadline=deadline)
        if isinstance(opened, tuple):
            return opened
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch(receive, gone))
        try:
            await _relay(opened, lane, send, gone, self.state.settings.expose_tracebacks)
        finally:
            watcher.cancel()
        return None

    def _open(self, request: StreamRequest) -> _Stream | tuple[int, bytes]:
        """On the lane: parse, start the model's stream and pull its first chunk."""
        predictor = self.state.predictor
        assert predictor is not None
        context = contextvars.copy_context()
        try:
            parsed = parse_json(_encode(request.body), predictor.contract)
            chunks = context.run(predictor.model.predict_stream, parsed.data, parsed.params)
            stream = _Stream(iter(chunks), context)
            stream.first = stream.pull()
        except Exception as exc:
            return from_exception(exc, expose_tracebacks=self.state.settings.expose_tracebacks)
        return stream


def _encode(body: dict[str, Any]) -> bytes:
    # The standard library, not orjson: it keeps NaN and integers beyond 64 bits as the body had them.
    return json.dumps(body).encode()


async def _watch(receive: Receive, gone: asyncio.Event) -> None:
    """Set ``gone`` when the client disconnects (the body has been read: nothing else comes)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def _relay(stream: _Stream, lane: PredictLane, send: Send, gone: asyncio.Event, traces: bool) -> None:
    """Send each chunk as it comes, then ``[DONE]``; stop pulling (and close) once the client is gone."""
    loop = asyncio.get_running_loop()
    event = stream.first
    while event is not None:
        await send({"type": "http.response.body", "body": event, "more_body": True})
        pull = asyncio.ensure_future(lane.run(stream.pull, deadline=loop.time() + lane.timeout))
        waiter = asyncio.ensure_future(gone.wait())
        await asyncio.wait({pull, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not pull.done():  # the client is gone: the chunk being made is the last one
            pull.cancel()
            logger.info("the client disconnected mid-stream; closing the model's stream")
            await _close(stream, lane)
            return
        try:
            event = pull.result()
        except PredictTimeout as exc:
            if not exc.started:  # still queued: nothing runs the generator, so it can be closed
                await _close(stream, lane)
            event = _error_event(
                DEADLINE_EXCEEDED, f"{wording.TIMEOUT}: {exc} (waiting for the stream's next chunk)"
            )
            break
        except Exception as exc:
            event = _failure_event(exc, traces)
            break
    if event is not None:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": DONE_EVENT, "more_body": False})


async def _close(stream: _Stream, lane: PredictLane) -> None:
    loop = asyncio.get_running_loop()
    with suppress(Exception):  # the client is gone; the log has the model's error if any
        await lane.run(stream.close, deadline=loop.time() + lane.timeout)


def _failure_event(exc: BaseException, traces: bool) -> bytes:
    _, body = from_exception(exc, expose_tracebacks=traces)
    fields = orjson.loads(body)
    fields["error"] = fields["message"]
    return b"data: " + orjson.dumps(fields) + b"\n\n"


def _error_event(error_code: str, message: str) -> bytes:
    return _failure_event(ScoringFailure(message, status=500, error_code=error_code), traces=False)
