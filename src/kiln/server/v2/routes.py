"""The V2 endpoints: health, server and model metadata, and infer through the shared scoring path.

``POST /v2/models/{name}[/versions/{version}]/infer`` is a ``ScoringEndpoint`` like
``/invocations``: the same body limit (413), queue limit (503 with ``Retry-After``), predict
lane and request timeout (504), and the same metrics; only its error bodies are the
protocol's ``{"error": ...}``. The other endpoints answer on the event loop and are never
queued, like ``/ping``.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from kiln.server.errors import ENDPOINT_NOT_FOUND, ScoringFailure
from kiln.server.invocations import ScoringEndpoint, Work, header
from kiln.server.state import ServerState
from kiln.server.v2.decode import decode_request
from kiln.server.v2.encode import encode_prediction
from kiln.server.v2.errors import V2Failure, error_json, not_found
from kiln.server.v2.metadata import V2Model
from kiln.server.v2.tensors import InferRequest, parse_infer_request
from kiln.version import __version__

logger = logging.getLogger(__name__)

JSON = "application/json"
BINARY_HEADER = b"inference-header-content-length"
MODEL = "/v2/models/{model_name}"
VERSION = "/v2/models/{model_name}/versions/{model_version}"


def v2_routes(state: ServerState) -> list[Route]:
    """The routes of the V2 protocol, for the app's router."""
    infer = ScoringEndpoint(state, V2Scoring(state))
    routes = [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
    ]
    for base in (MODEL, VERSION):
        routes += [
            Route(base, model_metadata, methods=["GET"]),
            Route(f"{base}/ready", model_ready, methods=["GET"]),
            Route(f"{base}/infer", infer, methods=["POST"]),
        ]
    return routes


class V2Scoring:
    """The infer endpoint's part of the scoring path."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def prepare(self, scope: Scope) -> Work:
        try:
            model = find_model(self.state, scope.get("path_params", {}))
        except V2Failure as exc:
            raise ScoringFailure(exc.message, status=exc.status, error_code=ENDPOINT_NOT_FOUND) from exc
        if header(scope, BINARY_HEADER) is not None:
            raise ScoringFailure(
                "binary tensor data (Inference-Header-Content-Length) is not supported: send the "
                "tensors as JSON (tritonclient: binary_data=False on every input and output)"
            )
        return functools.partial(infer, self.state, model)

    def error(self, status: int, error_code: str, message: str) -> bytes:
        return error_json(message)


def find_model(state: ServerState, path_params: dict[str, Any]) -> V2Model:
    """The served model if the path names it (and its version, if any); V2Failure 404 if not."""
    model = state.v2
    name, version = path_params.get("model_name"), path_params.get("model_version")
    if model is None:
        raise V2Failure("the model is still loading", 503)
    if name != model.name or (version is not None and version != model.version):
        raise not_found(str(name), version)
    return model


def infer(state: ServerState, model: V2Model, body: bytes) -> tuple[int, bytes]:
    """Status and JSON answer of one infer request (runs on the predict lane)."""
    predictor = state.predictor
    assert predictor is not None
    try:
        request = parse_infer_request(body)
        data = decode_request(request, model)
        prediction = predictor.predict(data, request.params)
        return 200, orjson.dumps(_answer(request, model, prediction))
    except V2Failure as exc:
        return exc.status, error_json(exc.message)
    except ScoringFailure as exc:  # MLflow refused the input, or the model raised
        if exc.stack_trace:
            logger.warning("V2 infer failed with %d: %s\n%s", exc.status, exc.message, exc.stack_trace)
        return exc.status, error_json(exc.message)


def _answer(request: InferRequest, model: V2Model, prediction: Any) -> dict[str, Any]:
    outputs, content_type = encode_prediction(prediction)
    if request.outputs:
        by_name = {output["name"]: output for output in outputs}
        missing = [name for name in request.outputs if name not in by_name]
        if missing:
            raise V2Failure(f"the model has no output named {missing[0]!r}; its outputs: {list(by_name)}")
        outputs = [by_name[name] for name in request.outputs]
    answer: dict[str, Any] = {"model_name": model.name}
    if model.version is not None:
        answer["model_version"] = model.version
    answer["id"] = request.id if request.id is not None else str(uuid.uuid4())
    answer["parameters"] = {"content_type": content_type}
    answer["outputs"] = outputs
    return answer


async def server_metadata(request: Request) -> Response:
    document = {"name": "kiln", "version": __version__, "extensions": []}
    return Response(orjson.dumps(document), 200, media_type=JSON)


async def live(request: Request) -> Response:
    return Response(b"", 200)


async def ready(request: Request) -> Response:
    state: ServerState = request.app.state.kiln
    if state.v2 is None:
        return Response(error_json("the model is still loading"), 503, media_type=JSON)
    return Response(b"", 200)


async def model_metadata(request: Request) -> Response:
    try:
        model = find_model(request.app.state.kiln, request.path_params)
    except V2Failure as exc:
        return Response(error_json(exc.message), exc.status, media_type=JSON)
    return Response(orjson.dumps(model.as_json()), 200, media_type=JSON)


async def model_ready(request: Request) -> Response:
    try:
        find_model(request.app.state.kiln, request.path_params)
    except V2Failure as exc:
        return Response(error_json(exc.message), exc.status, media_type=JSON)
    return Response(b"", 200)
