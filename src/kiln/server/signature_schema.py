"""An MLflow signature, as MLmodel stores it, as JSON Schema (the 2020-12 dialect of OpenAPI 3.1).

MLmodel keeps ``inputs``, ``outputs`` and ``params`` as JSON strings: a list of column specs
(``{"type": "double", "name": "x", "required": true}``, with ``array``, ``object``, ``map``
and ``any`` nesting), of tensor specs (``{"type": "tensor", "tensor-spec": {"dtype":
"float64", "shape": [-1, 4]}}``), or of param specs (``{"name", "type", "default",
"shape"}``). ``Signature.read`` parses them without MLflow; the ``*_schema`` functions give
what a JSON request must hold for them. A type kiln does not know becomes ``{}`` (any
value), so a signature from a newer MLflow still gets a document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
SCALAR_TYPES = frozenset({"boolean", "integer", "long", "float", "double", "string", "binary", "datetime"})
"""MLflow's ``DataType`` names: the column types that have a pandas type."""
_COLUMN_TYPES: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1},
    "long": {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
    "string": {"type": "string"},
    "binary": {"type": "string", "contentEncoding": "base64"},
    "datetime": {"type": "string", "format": "date-time"},
    "any": {},
}


@dataclass(frozen=True)
class Signature:
    """The parsed signature; each part is a list of specs, or None when MLmodel has none."""

    inputs: tuple[Mapping[str, Any], ...] | None = None
    outputs: tuple[Mapping[str, Any], ...] | None = None
    params: tuple[Mapping[str, Any], ...] | None = None

    @classmethod
    def read(cls, raw: Mapping[str, Any] | None) -> Signature:
        """From MLmodel's ``signature`` mapping (JSON strings, or already parsed lists)."""
        if not raw:
            return cls()
        return cls(_specs(raw.get("inputs")), _specs(raw.get("outputs")), _specs(raw.get("params")))

    @property
    def is_tensor(self) -> bool:
        return bool(self.inputs) and all(spec.get("type") == "tensor" for spec in self.inputs or ())

    @property
    def csv_readable(self) -> bool:
        """Whether a CSV body can be read for this signature: none, or only scalar columns.

        MLflow reads CSV with the signature's pandas types, which tensors and nested
        (array, object, map, any) columns do not have: every CSV body gets 400.
        """
        return all(spec.get("type") in SCALAR_TYPES for spec in self.inputs or ())

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of the input columns (or tensors), when every input is named."""
        names = [spec.get("name") for spec in self.inputs or ()]
        return tuple(str(n) for n in names) if names and all(isinstance(n, str) for n in names) else ()

    @property
    def required_names(self) -> list[str]:
        return [
            s["name"] for s in self.inputs or () if isinstance(s.get("name"), str) and s.get("required", True)
        ]


def _specs(value: Any) -> tuple[Mapping[str, Any], ...] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, list):
        return None
    return tuple(spec for spec in value if isinstance(spec, Mapping))


def column_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one value of a column spec (or of a nested array/object/map type)."""
    kind = spec.get("type")
    if kind == "array":
        items = spec.get("items")
        return {"type": "array", "items": column_schema(items) if isinstance(items, Mapping) else {}}
    if kind == "object":
        properties = spec.get("properties")
        if not isinstance(properties, Mapping):
            return {"type": "object"}
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: nullable(column_schema(p), p) for name, p in properties.items()},
        }
        required = [name for name, p in properties.items() if p.get("required", True)]
        if required:
            schema["required"] = required
        return schema
    if kind == "map":
        values = spec.get("values")
        return {
            "type": "object",
            "additionalProperties": column_schema(values) if isinstance(values, Mapping) else {},
        }
    if kind == "tensor":
        return tensor_schema(spec)
    return dict(_COLUMN_TYPES.get(kind, {})) if isinstance(kind, str) else {}


def nullable(schema: dict[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` that also allows null when the spec is optional (``required: false``)."""
    if spec.get("required", True) or not schema:
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def dtype_schema(dtype: Any) -> dict[str, Any]:
    """The JSON Schema of one element of a numpy dtype."""
    name = str(dtype)
    if name.startswith("float"):
        return {"type": "number"}
    if name in _INT_RANGES:
        low, high = _INT_RANGES[name]
        return {"type": "integer", "minimum": low, "maximum": high}
    if name in ("bool", "bool_"):
        return {"type": "boolean"}
    if name in ("str", "str_") or name.startswith("<U"):
        return {"type": "string"}
    if name in ("bytes", "bytes_") or name.startswith("|S"):
        return {"type": "string", "contentEncoding": "base64"}
    return {}


def tensor_schema(spec: Mapping[str, Any], *, batch: bool = True) -> dict[str, Any]:
    """Nested arrays of the tensor's shape; ``batch=False`` drops the first (row) dimension."""
    nested = spec.get("tensor-spec")
    tensor: Mapping[str, Any] = nested if isinstance(nested, Mapping) else spec
    shape = tensor.get("shape")
    dims = list(shape) if isinstance(shape, list) else []
    if not batch:
        dims = dims[1:]
    schema = dtype_schema(tensor.get("dtype"))
    for size in reversed(dims):
        level: dict[str, Any] = {"type": "array", "items": schema}
        if isinstance(size, int) and size >= 0:
            level["minItems"] = level["maxItems"] = size
        schema = level
    return schema


def params_schema(params: tuple[Mapping[str, Any], ...] | None) -> dict[str, Any]:
    """The ``params`` object: the declared params with their types and defaults; others are ignored."""
    schema: dict[str, Any] = {"type": "object"}
    if not params:
        schema["description"] = "The model declares no params; any given are ignored with a warning."
        return schema
    properties = {}
    for spec in params:
        name = spec.get("name")
        if not isinstance(name, str):
            continue
        kind = spec.get("type")
        value = column_schema(kind if isinstance(kind, Mapping) else {"type": kind})
        if spec.get("shape"):
            value = {"type": "array", "items": value}
        if spec.get("default") is not None:
            value = {**value, "default": spec["default"]}
        properties[name] = value
    schema["properties"] = properties
    schema["description"] = (
        "Params the model declares; missing ones take their defaults, unknown ones are ignored."
    )
    return schema
