"""The Open Inference Protocol v2 part of the OpenAPI document: its paths for the served model and schemas.

The paths name the model (``/v2/models/mlflow-model/infer``), as the server answers only
for that name; with a version, the versioned paths are listed too. The infer operation
describes the model's input tensors and default content type, from the signature as the
server reads it (``kiln.server.v2.metadata``).
"""

from __future__ import annotations

from typing import Any

from kiln.server.v2.metadata import V2Model
from kiln.server.v2.tensors import DATATYPES

JSON = "application/json"
V2_ERROR_REF = {"$ref": "#/components/schemas/V2Error"}


def v2_paths(model: V2Model, *, max_body_size: int, request_timeout: float) -> dict[str, Any]:
    """The V2 paths of the document, for ``model``."""
    paths: dict[str, Any] = {
        "/v2": {
            "get": _get("v2_server_metadata", "Server metadata", "#/components/schemas/V2ServerMetadata")
        },
        "/v2/health/live": {"get": _probe("v2_live", "Liveness", model=False)},
        "/v2/health/ready": {"get": _probe("v2_ready", "Readiness: the model is loaded", model=False)},
    }
    bases = [(f"/v2/models/{model.name}", "")]
    if model.version:
        bases.append((f"/v2/models/{model.name}/versions/{model.version}", "_version"))
    for base, suffix in bases:
        paths[base] = {
            "get": _get(
                f"v2_model_metadata{suffix}",
                "The model's inputs, outputs and content type, from its signature",
                "#/components/schemas/V2ModelMetadata",
                not_found=True,
            )
        }
        paths[f"{base}/ready"] = {"get": _probe(f"v2_model_ready{suffix}", "The model is ready", model=True)}
        paths[f"{base}/infer"] = {"post": _infer(model, suffix, max_body_size, request_timeout)}
    return paths


def _tensor_schemas() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A tensor with its data, a tensor in model metadata (no data), and ``parameters``."""
    parameters = {"type": "object", "properties": {"content_type": {"type": "string"}}}
    datatype = {"type": "string", "enum": list(DATATYPES)}
    shape = {"type": "array", "items": {"type": "integer"}}
    tensor = {
        "type": "object",
        "required": ["name", "datatype", "shape", "data"],
        "properties": {
            "name": {"type": "string"},
            "datatype": datatype,
            "shape": shape,
            "parameters": parameters,
            "data": {"description": "The elements, flat (row-major) or nested"},
        },
    }
    metadata_tensor = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": datatype,
            "shape": shape,
            "parameters": parameters,
        },
    }
    return tensor, metadata_tensor, parameters


def v2_schemas() -> dict[str, Any]:
    """The schemas the V2 paths refer to."""
    tensor, metadata_tensor, parameters = _tensor_schemas()
    return {
        "V2Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "V2Tensor": tensor,
        "V2InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": parameters,
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": "#/components/schemas/V2Tensor"},
                },
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                },
            },
        },
        "V2InferResponse": {
            "type": "object",
            "required": ["model_name", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "parameters": parameters,
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}},
            },
        },
        "V2ModelMetadata": {
            "type": "object",
            "required": ["name", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": metadata_tensor},
                "outputs": {"type": "array", "items": metadata_tensor},
                "parameters": parameters,
            },
        },
        "V2ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            },
        },
    }


def _infer(model: V2Model, suffix: str, max_body_size: int, request_timeout: float) -> dict[str, Any]:
    inputs = ", ".join(f"`{t.name}` {t.datatype} {list(t.shape)} ({t.content_type})" for t in model.inputs)
    default = f"`{model.content_type}`" if model.content_type else "none: the request must set one"
    return {
        "operationId": f"v2_infer{suffix}",
        "summary": "Score the model (Open Inference Protocol v2)",
        "description": f"Input tensors: {inputs or 'no signature'}. Request content type when none is "
        f"given: {default}. `parameters` other than `content_type` are passed to the model as params.",
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/V2InferRequest"}}},
        },
        "responses": {
            "200": {
                "description": "The output tensors",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/V2InferResponse"}}},
            },
            "400": _error("Malformed request, tensors that do not fit the signature, or an error in predict"),
            "404": _error("No model of that name or version here"),
            "413": _error(f"The body is larger than {max_body_size} bytes (KILN_MAX_BODY_SIZE)"),
            "500": _error("The prediction has no tensor encoding"),
            "503": {
                **_error("The model is still loading, or this worker's queue is full (KILN_MAX_QUEUE)"),
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
            "504": _error(f"No answer within {request_timeout:g} s (KILN_REQUEST_TIMEOUT)"),
        },
    }


def _get(operation: str, summary: str, schema: str, *, not_found: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": summary, "content": {JSON: {"schema": {"$ref": schema}}}}
    }
    if not_found:
        responses["404"] = _error("No model of that name or version here")
    return {"operationId": operation, "summary": summary, "responses": responses}


def _probe(operation: str, summary: str, *, model: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": f"{summary} (empty body)"}}
    if model:
        responses["404"] = _error("No model of that name or version here")
    responses["503"] = _error("The model is still loading")
    return {"operationId": operation, "summary": summary, "responses": responses}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": V2_ERROR_REF}}}
