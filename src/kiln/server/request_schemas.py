"""The JSON bodies ``POST /invocations`` accepts for a signature, as OpenAPI component schemas.

One schema per format of MLflow's scoring protocol (SPEC section 4), each holding what the
signature says: ``dataframe_split`` (columns by name, rows of their types),
``dataframe_records`` and ``instances`` (records of the named columns), ``inputs``
(column name -> list of values, or the tensor's nested arrays), ``params`` (the declared
params with their defaults), the LLM-style body when a column is ``messages``, ``prompt``
or ``input``, and only ``inputs`` when the signature comes from the model's type hints.
Without a signature, the generic shapes.
"""

from __future__ import annotations

from typing import Any

from kiln.server.signature_schema import (
    Signature,
    column_schema,
    nullable,
    params_schema,
    tensor_schema,
)

LLM_KEYS = ("messages", "prompt", "input")


def request_variants(signature: Signature, *, type_hints: bool) -> dict[str, Any]:
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
    row_types = _distinct([nullable(column_schema(s), s) for s in signature.inputs or ()])
    cell = row_types[0] if len(row_types) == 1 else {"anyOf": row_types}
    least, most = len(signature.required_names), len(names)  # optional columns may be left out
    columns = {"type": "array", "items": {"enum": names}, "uniqueItems": True}
    columns.update(minItems=least, maxItems=most)
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
                "items": {"type": "array", "items": cell, "minItems": least, "maxItems": most},
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
