"""``openapi_document(info, ...)``: the OpenAPI 3.1 description of the scoring server for one model.

The request bodies (``request_schemas``) are the formats ``POST /invocations`` accepts, each
with the schema the model's signature gives it: column names and types for a column
signature, nested arrays of the right shape and element type for a tensor signature, the
declared params with their defaults. A model without a signature gets the generic shapes.
The answers are the ones the server gives, error bodies included. The server builds the
document once, after the model has loaded, and serves it at ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from kiln.model.info import ModelInfo
from kiln.server.openapi_v2 import v2_paths, v2_schemas
from kiln.server.request_schemas import request_variants
from kiln.server.signature_schema import Signature
from kiln.server.v2.metadata import V2Model

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
EVENT_STREAM = "text/event-stream"
STREAM_FLAG = {
    "type": "boolean",
    "default": False,
    "description": "true: answer as server-sent events (text/event-stream) from the model's predict_stream",
}
STREAM_ANSWER = (
    'With `"stream": true`: one event `data: <chunk as JSON>` per chunk of the model\'s predict_stream, '
    'then `data: [DONE]`. A failure after the first chunk is a last event `data: {"error_code", "message", '
    '"error_class", "sqlstate", "error"}` before `data: [DONE]`; one before it is the JSON error answer.'
)


def openapi_document(
    info: ModelInfo,
    *,
    version: str,
    max_body_size: int,
    request_timeout: float,
    metrics: bool = True,
    parquet: bool = True,
    serving_example: Any = None,
    v2: V2Model | None = None,
) -> dict[str, Any]:
    """The OpenAPI document (a JSON-ready dict) of the server for the model ``info`` describes.

    ``version``: the document's version (kiln's); ``metrics``: whether ``/metrics`` is
    served; ``parquet``: whether the model's environment can read parquet bodies;
    ``serving_example``: the model's ``serving_input_example.json``, shown as the example;
    ``v2``: the model as the Open Inference Protocol endpoints serve it (None: they are off).
    """
    signature = Signature.read(info.signature)
    type_hints = info.mlmodel.get("is_signature_from_type_hint") is True
    streams = streamable(info)
    variants = request_variants(signature, type_hints=type_hints)
    if streams:
        variants = {name: _with_stream(schema) for name, schema in variants.items()}
    paths: dict[str, Any] = {
        "/ping": {"get": _health("ping", "Liveness and readiness")},
        "/health": {"get": _health("health", "The same as /ping")},
        "/version": {"get": _version()},
        "/invocations": {
            "post": _invocations(
                signature, variants, parquet, serving_example, max_body_size, request_timeout, streams
            )
        },
    }
    if metrics:
        paths["/metrics"] = {"get": _metrics()}
    paths["/openapi.json"] = {"get": _self_description()}
    paths["/docs"] = {"get": _docs_page()}
    schemas = {"Error": _error_schema(), **variants}
    if v2 is not None:
        paths.update(v2_paths(v2, max_body_size=max_body_size, request_timeout=request_timeout))
        schemas.update(v2_schemas())
    return {
        "openapi": OPENAPI_VERSION,
        "info": _info(info, signature, version, type_hints, v2),
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _info(
    info: ModelInfo, signature: Signature, version: str, type_hints: bool, v2: V2Model | None
) -> dict[str, Any]:
    flavors = ", ".join(info.flavors)
    lines = [
        f"Scores an MLflow model (flavours: {flavors}; loader `{info.loader_module or 'unknown'}`; "
        f"saved with MLflow {info.mlflow_version or 'unknown'}) with MLflow's scoring protocol, "
        "served by kiln.",
        "",
        f"Inputs: {_describe_specs(signature.inputs)}.",
        f"Outputs: {_describe_specs(signature.outputs)}.",
    ]
    if signature.params:
        lines.append(f"Params: {_describe_specs(signature.params)}.")
    if type_hints:
        lines.append('The signature comes from the model\'s type hints: send `{"inputs": ...}`.')
    lines += [
        "",
        'Every error answer is JSON: `{"error_code": ..., "message": ..., "error_class": ..., '
        '"sqlstate": ...}`, as MLflow 3 answers.',
    ]
    if v2 is not None:
        lines += [
            "",
            f"The Open Inference Protocol v2 (KServe V2) serves the same model as `{v2.name}` under "
            '`/v2`; its errors are `{"error": ...}`.',
        ]
    return {"title": "MLflow model scoring server", "version": version, "description": "\n".join(lines)}


def _describe_specs(specs: Any) -> str:
    if not specs:
        return "no signature"
    parts = []
    for spec in specs:
        kind = spec.get("type")
        if kind == "tensor":
            tensor = spec.get("tensor-spec") or {}
            kind = f"tensor {tensor.get('dtype')} {tensor.get('shape')}"
        elif not isinstance(kind, str):
            kind = "object"
        name = spec.get("name")
        parts.append(f"`{name}` {kind}" if name else str(kind))
    return ", ".join(parts)


# --- the operations --------------------------------------------------------------------------


def _invocations(
    signature: Signature,
    variants: dict[str, Any],
    parquet: bool,
    example: Any,
    max_body_size: int,
    request_timeout: float,
    streams: bool,
) -> dict[str, Any]:
    json_body: dict[str, Any] = {
        "schema": {"anyOf": [{"$ref": f"#/components/schemas/{n}"} for n in variants]}
    }
    if example is not None:
        json_body["examples"] = {
            "serving_input_example": {"summary": "The model's own example", "value": example}
        }
    header = ", ".join(signature.column_names) or "the model's columns"
    content: dict[str, Any] = {JSON: json_body}
    if signature.csv_readable:
        content[CSV] = {"schema": {"type": "string", "description": f"CSV with a header row ({header})."}}
    if parquet:
        content[PARQUET] = {"schema": {"type": "string", "format": "binary"}}
    refused = "Malformed body, a wrong shape or type, or an error inside the model's predict"
    if not streams:
        refused += ' (also `"stream": true`: this model has no predict_stream)'
    return {
        "operationId": "invocations",
        "summary": "Score the model",
        "description": "A JSON body has exactly one of `dataframe_split`, `dataframe_records`, "
        "`instances`, `inputs` (plus an optional `params` object); CSV has a header row. "
        "The Content-Type parameter `charset=utf-8` is the only one allowed.",
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {"description": "The prediction", "content": _answer(signature, variants, streams)},
            "400": _error(refused),
            "413": _error(f"The body is larger than {max_body_size} bytes (KILN_MAX_BODY_SIZE)"),
            "415": _error("Missing or unsupported Content-Type, or a charset other than UTF-8"),
            "500": _error("The prediction has no JSON form"),
            "503": {
                **_error("The model is still loading, or this worker's queue is full (KILN_MAX_QUEUE)"),
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
            "504": _error(f"No answer within {request_timeout:g} s (KILN_REQUEST_TIMEOUT)"),
        },
    }


def _answer(signature: Signature, variants: dict[str, Any], streams: bool) -> dict[str, Any]:
    prediction = {
        "description": "The model's prediction (outputs: " + _describe_specs(signature.outputs) + ")."
    }
    ok_schema: dict[str, Any] = (
        {"description": 'LLM-style requests get the prediction itself; others `{"predictions": ...}`.'}
        if "ChatRequest" in variants
        else {"type": "object", "required": ["predictions"], "properties": {"predictions": prediction}}
    )
    content: dict[str, Any] = {JSON: {"schema": ok_schema}}
    if streams:
        content[EVENT_STREAM] = {"schema": {"type": "string", "description": STREAM_ANSWER}}
    return content


def streamable(info: ModelInfo) -> bool:
    """The MLmodel's python_function flavour says ``streamable``: the model has ``predict_stream``."""
    flavors = info.mlmodel.get("flavors")
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    return isinstance(pyfunc, dict) and pyfunc.get("streamable") is True


def _with_stream(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "properties": {**schema.get("properties", {}), "stream": STREAM_FLAG}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ERROR_REF}}}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {
            "error_code": {
                "type": "string",
                "description": "MLflow's error codes: BAD_REQUEST, INVALID_PARAMETER_VALUE, "
                "REQUEST_LIMIT_EXCEEDED, ENDPOINT_NOT_FOUND, TEMPORARILY_UNAVAILABLE, "
                "DEADLINE_EXCEEDED, INTERNAL_ERROR, or one an MLflow exception carries",
            },
            "message": {
                "type": "string",
                "description": "Begins with MLflow's own wording for the same error; kiln's detail follows",
            },
            "error_class": {
                "type": "string",
                "description": "MLflow 3's error class: the one MLflow derives from error_code "
                "(e.g. INVALID_PARAMETER_VALUE for BAD_REQUEST), or SCHEMA_ENFORCEMENT_FAILED when "
                "the input does not fit the signature; absent for codes MLflow leaves unclassified "
                "(REQUEST_LIMIT_EXCEEDED, DEADLINE_EXCEEDED)",
            },
            "sqlstate": {
                "type": "string",
                "description": "MLflow 3's SQLSTATE for error_class: KAM00 (invalid input), KAM01 "
                "(schema enforcement), XXM00 (internal); absent with error_class",
            },
            "stack_trace": {"type": "string", "description": "Only with KILN_EXPOSE_TRACEBACKS=true"},
        },
    }


def _health(operation: str, summary: str) -> dict[str, Any]:
    return {
        "operationId": operation,
        "summary": summary,
        "description": "200 once the model is loaded (the body is a newline, as MLflow's); never before.",
        "responses": {
            "200": {"description": "The model is loaded and the server answers"},
            "503": _error("The model is still loading, or no worker is ready"),
        },
    }


def _version() -> dict[str, Any]:
    return {
        "operationId": "version",
        "summary": "MLflow's version",
        "responses": {
            "200": {
                "description": "MLflow's version as text; kiln's in the X-Kiln-Version header",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    }


def _metrics() -> dict[str, Any]:
    return {
        "operationId": "metrics",
        "summary": "Prometheus metrics, summed over the workers",
        "responses": {
            "200": {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    }


def _self_description() -> dict[str, Any]:
    return {
        "operationId": "openapi",
        "summary": "This document (off with KILN_OPENAPI=false)",
        "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}
        },
    }


def _docs_page() -> dict[str, Any]:
    return {
        "operationId": "docs",
        "summary": "Interactive documentation of this document (off with KILN_OPENAPI=false)",
        "responses": {
            "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
        },
    }
