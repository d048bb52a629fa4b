"""``openapi_document(info, ...)``: the OpenAPI 3.1 description of the scoring server for one model.

The request bodies are the formats ``POST /invocations`` accepts (SPEC section 4), each
with the schema the model's signature gives it: column names and types for a column
signature, nested arrays of the right shape and element type for a tensor signature, the
declared params with their defaults. A model without a signature gets the generic shapes.
The answers are the ones the server gives, error bodies included. The server builds the
document once, after the model has loaded, and serves it at ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from kiln.model.info import ModelInfo
from kiln.server.signature_schema import (
    Signature,
    column_schema,
    nullable,
    params_schema,
    tensor_schema,
)

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
LLM_KEYS = ("messages", "prompt", "input")
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def openapi_document(
    info: ModelInfo,
    *,
    version: str,
    max_body_size: int,
    request_timeout: float,
    metrics: bool = True,
    parquet: bool = True,
    serving_example: Any = None,
) -> dict[str, Any]:
    """The OpenAPI document (a JSON-ready dict) of the server for the model ``info`` describes.

    ``version``: the document's version (kiln's); ``metrics``: whether ``/metrics`` is
    served; ``parquet``: whether the model's environment can read parquet bodies;
    ``serving_example``: the model's ``serving_input_example.json``, shown as the example.
    """
    signature = Signature.read(info.signature)
    type_hints = info.mlmodel.get("is_signature_from_type_hint") is True
    variants = _request_variants(signature, type_hints=type_hints)
    paths: dict[str, Any] = {
        "/ping": {"get": _health("ping", "Liveness and readiness")},
        "/health": {"get": _health("health", "The same as /ping")},
        "/version": {"get": _version()},
        "/invocations": {
            "post": _invocations(
                signature, variants, parquet, serving_example, max_body_size, request_timeout
            )
        },
    }
    if metrics:
        paths["/metrics"] = {"get": _metrics()}
    paths["/openapi.json"] = {"get": _self_description()}
    paths["/docs"] = {"get": _docs_page()}
    return {
        "openapi": OPENAPI_VERSION,
        "info": _info(info, signature, version, type_hints),
        "paths": paths,
        "components": {"schemas": {"Error": _error_schema(), **variants}},
    }


def _info(info: ModelInfo, signature: Signature, version: str, type_hints: bool) -> dict[str, Any]:
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
    lines += ["", 'Every error answer is JSON: `{"error_code": ..., "message": ...}`.']
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


# --- the request bodies ----------------------------------------------------------------------


def _request_variants(signature: Signature, *, type_hints: bool) -> dict[str, Any]:
    """Component schemas for the JSON bodies this model accepts, by name."""
    params = params_schema(signature.params)
    if type_hints:
        return {"InputsRequest": _wrapped("inputs", _hinted_inputs(signature), params)}
    if signature.is_tensor:
        split, records, instances, inputs = _tensor_shapes(signature)
    elif signature.column_names:
        split, records, inputs = (
            _columns_split(signature),
            _columns_records(signature),
            _columns_inputs(signature),
        )
        instances = records
    else:
        split, records, instances, inputs = _generic_split(), _generic_records(), {"type": "array"}, {}
    variants = {
        "DataframeSplitRequest": _wrapped("dataframe_split", split, params),
        "DataframeRecordsRequest": _wrapped("dataframe_records", records, params),
        "InstancesRequest": _wrapped("instances", instances, params),
        "InputsRequest": _wrapped("inputs", inputs, params),
    }
    if any(name in LLM_KEYS for name in signature.column_names):
        variants["ChatRequest"] = _llm_request(signature, params)
    return variants


def _tensor_shapes(signature: Signature) -> tuple[dict[str, Any], ...]:
    """split, records, instances, inputs for a tensor signature (DataFrames: generic)."""
    specs = signature.inputs or ()
    if signature.column_names:  # named tensors: an object of tensors; instances: a list of rows
        inputs = {
            "type": "object",
            "properties": {s["name"]: tensor_schema(s) for s in specs},
            "required": list(signature.column_names),
        }
        row = {
            "type": "object",
            "properties": {s["name"]: tensor_schema(s, batch=False) for s in specs},
            "required": list(signature.column_names),
        }
        instances = {"type": "array", "minItems": 1, "items": row}
    else:  # one tensor, the batch first: instances and inputs are the same
        inputs = instances = tensor_schema(specs[0])
    return _generic_split(), _generic_records(), instances, inputs


def _wrapped(key: str, value: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: value, "params": params},
        "additionalProperties": False,
    }


def _columns_split(signature: Signature) -> dict[str, Any]:
    names = list(signature.column_names)
    row_types = _distinct([column_schema(s) for s in signature.inputs or ()])
    cell = row_types[0] if len(row_types) == 1 else {"anyOf": row_types}
    columns: dict[str, Any] = {"type": "array", "items": {"enum": names}, "uniqueItems": True}
    if len(signature.required_names) == len(names):
        columns["minItems"] = columns["maxItems"] = len(names)
    return {
        "type": "object",
        "description": "Rows in `data`, their values in the order of `columns`, which names "
        "the signature's columns in any order (MLflow matches columns by name).",
        "required": ["columns", "data"],
        "properties": {
            "columns": columns,
            "index": {"type": "array"},
            "data": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "array", "items": cell, "minItems": len(names), "maxItems": len(names)},
            },
        },
        "additionalProperties": False,
    }


def _record(signature: Signature) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "object",
        "properties": {s["name"]: nullable(column_schema(s), s) for s in signature.inputs or ()},
    }
    if signature.required_names:
        record["required"] = signature.required_names
    return record


def _columns_records(signature: Signature) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "items": _record(signature)}


def _columns_inputs(signature: Signature) -> dict[str, Any]:
    """Column-oriented: each column name to its list of values (all lists of one length)."""
    properties = {
        s["name"]: {"type": "array", "minItems": 1, "items": nullable(column_schema(s), s)}
        for s in signature.inputs or ()
    }
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if signature.required_names:
        schema["required"] = signature.required_names
    return schema


def _hinted_inputs(signature: Signature) -> dict[str, Any]:
    """What a type-hinted ``predict`` takes: a list of the hinted element type."""
    specs = signature.inputs or ()
    if len(specs) == 1 and not specs[0].get("name"):
        return {"type": "array", "items": column_schema(specs[0])}
    return {}


def _generic_split() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "index": {"type": "array"},
            "data": {"type": "array", "minItems": 1, "items": {"type": "array"}},
        },
        "additionalProperties": False,
    }


def _generic_records() -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "items": {"type": "object"}}


def _llm_request(signature: Signature, params: dict[str, Any]) -> dict[str, Any]:
    """An LLM-style body: the signature's fields at the top level, params beside them."""
    record = _record(signature)
    record["properties"] = {**params.get("properties", {}), **record["properties"]}
    record["description"] = "Passed whole to the model; the answer is the prediction itself."
    return record


def _distinct(schemas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for schema in schemas:
        if schema not in found:
            found.append(schema)
    return found or [{}]


# --- the operations --------------------------------------------------------------------------


def _invocations(
    signature: Signature,
    variants: dict[str, Any],
    parquet: bool,
    example: Any,
    max_body_size: int,
    request_timeout: float,
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
    unwrapped = "ChatRequest" in variants
    prediction = {
        "description": "The model's prediction (outputs: " + _describe_specs(signature.outputs) + ")."
    }
    ok_schema: dict[str, Any] = (
        {"description": 'LLM-style requests get the prediction itself; others `{"predictions": ...}`.'}
        if unwrapped
        else {"type": "object", "required": ["predictions"], "properties": {"predictions": prediction}}
    )
    return {
        "operationId": "invocations",
        "summary": "Score the model",
        "description": "A JSON body has exactly one of `dataframe_split`, `dataframe_records`, "
        "`instances`, `inputs` (plus an optional `params` object); CSV has a header row. "
        "The Content-Type parameter `charset=utf-8` is the only one allowed.",
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {"description": "The prediction", "content": {JSON: {"schema": ok_schema}}},
            "400": _error("Malformed body, a wrong shape or type, or an error inside the model's predict"),
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
            "message": {"type": "string"},
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
