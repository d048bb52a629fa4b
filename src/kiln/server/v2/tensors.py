"""An inference request's JSON -> frozen ``InferRequest`` of typed tensors, checked as the protocol says.

A request is ``{"id"?, "parameters"?, "inputs": [tensor, ...], "outputs"?: [{"name"}, ...]}``
and a tensor ``{"name", "datatype", "shape", "data", "parameters"?}``. ``data`` may be flat
(row-major) or nested; its element count must equal the product of ``shape``. Anything
else is a 400 with ``{"error": ...}`` saying which field is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from kiln.server.v2.errors import V2Failure

DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "bytes",
}
"""The protocol's datatypes and the numpy dtype of each (MLServer's table)."""

PROTOCOL_PARAMETERS = frozenset({"content_type", "headers", "binary_data_output"})
"""Request parameters that steer the protocol, not the model: never passed as ``params``."""


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any]
    """As sent: flat or nested lists."""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def content_type(self) -> str | None:
        value = self.parameters.get("content_type")
        return value if isinstance(value, str) else None

    def flat(self) -> list[Any]:
        """The elements in row-major order."""
        return flatten(self.data)


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: tuple[Tensor, ...]
    outputs: tuple[str, ...]
    """Names of the outputs asked for; empty: all of them."""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def content_type(self) -> str | None:
        value = self.parameters.get("content_type")
        return value if isinstance(value, str) else None

    @property
    def params(self) -> dict[str, Any] | None:
        """The parameters meant for the model (MLServer passes them as MLflow ``params``)."""
        params = {k: v for k, v in self.parameters.items() if k not in PROTOCOL_PARAMETERS}
        return params or None


def flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return data
    out: list[Any] = []
    for item in data:
        out.extend(flatten(item))
    return out


def parse_infer_request(body: bytes) -> InferRequest:
    """The request in ``body``; V2Failure 400 naming the field that is wrong."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise V2Failure(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise V2Failure(f"the request body must be a JSON object, got {_kind(document)}")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Failure(f"'id' must be a string, got {_kind(request_id)}")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Failure(f"'inputs' must be a non-empty list of tensors, got {_kind(inputs)}")
    return InferRequest(
        id=request_id,
        inputs=tuple(_tensor(item, f"inputs[{i}]") for i, item in enumerate(inputs)),
        outputs=_outputs(document.get("outputs")),
        parameters=_parameters(document.get("parameters"), "parameters"),
    )


def _tensor(item: Any, where: str) -> Tensor:
    if not isinstance(item, dict):
        raise V2Failure(f"{where} must be a tensor object, got {_kind(item)}")
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str):
        raise V2Failure(f"{where}.name must be a string, got {_kind(name)}")
    if datatype not in DATATYPES:
        raise V2Failure(f"{where} ({name!r}): datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise V2Failure(f"{where} ({name!r}): shape must be a list of non-negative integers, got {shape!r}")
    if "data" not in item:
        raise V2Failure(f"{where} ({name!r}) has no 'data'")
    data = item["data"] if isinstance(item["data"], list) else [item["data"]]
    count = len(flatten(data))
    if count != math.prod(shape):
        raise V2Failure(
            f"{where} ({name!r}): shape {shape} holds {math.prod(shape)} elements but 'data' has {count}"
        )
    parameters = _parameters(item.get("parameters"), f"{where}.parameters")
    return Tensor(name, datatype, tuple(shape), data, parameters)


def _outputs(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise V2Failure(f"'outputs' must be a list of {{\"name\": ...}} objects, got {_kind(value)}")
    names = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise V2Failure(f"outputs[{i}] must be an object with a string 'name', got {item!r:.200}")
        names.append(item["name"])
    return tuple(names)


def _parameters(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise V2Failure(f"{where} must be a JSON object, got {_kind(value)}")
    content_type = value.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise V2Failure(f"{where}.content_type must be a string, got {_kind(content_type)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number"}
    names[float] = "a number"
    return names.get(type(value), f"a {type(value).__name__}")
