"""The model's V2 metadata (tensors and content types) from its MLflow signature, as MLServer derives it.

Rules of ``mlserver_mlflow.metadata``: a column (ColSpec) is a tensor of shape ``[-1, 1]``
whose datatype and content type follow its type (double: FP64 ``np``, string: BYTES
``str``, binary: BYTES ``base64``, datetime: BYTES ``datetime``; arrays, objects and maps:
BYTES ``pd_json``); a TensorSpec keeps its dtype and shape (``np``). Unnamed specs are
``input-<i>``. The request's default content type is ``pd`` for a column signature,
``dict`` for named tensors and ``np`` for one unnamed tensor; without a signature there is
none and the request must say.

One deliberate difference: MLServer names unnamed outputs ``output-<i>`` from 0 in the
metadata but answers a single array as ``output-1``; kiln's metadata numbers them from 1,
so the names it lists are the names it answers with.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from kiln.server.v2.encode import numpy_datatype

COLUMN_TYPES: dict[str, tuple[str, str]] = {
    "boolean": ("BOOL", "np"),
    "integer": ("INT32", "np"),
    "long": ("INT64", "np"),
    "float": ("FP32", "np"),
    "double": ("FP64", "np"),
    "string": ("BYTES", "str"),
    "binary": ("BYTES", "base64"),
    "datetime": ("BYTES", "datetime"),
}
JSON_COLUMN = ("BYTES", "pd_json")


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: tuple[int, ...]
    content_type: str

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.shape),
            "parameters": {"content_type": self.content_type},
        }


@dataclass(frozen=True)
class V2Model:
    """What the V2 endpoints know about the one model this server serves."""

    name: str
    version: str | None
    inputs: tuple[TensorMetadata, ...] = ()
    outputs: tuple[TensorMetadata, ...] = ()
    content_type: str | None = None
    """The request content type when a request names none (from the signature)."""

    @property
    def input_content_types(self) -> dict[str, str]:
        return {tensor.name: tensor.content_type for tensor in self.inputs}

    def as_json(self) -> dict[str, Any]:
        """The answer of ``GET /v2/models/{name}``."""
        document: dict[str, Any] = {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": "mlflow",
            "inputs": [tensor.as_json() for tensor in self.inputs],
            "outputs": [tensor.as_json() for tensor in self.outputs],
        }
        if self.content_type is not None:
            document["parameters"] = {"content_type": self.content_type}
        return document


def describe_model(metadata: Any, *, name: str, version: str | None) -> V2Model:
    """The V2 description of a model whose ``mlflow.models.Model`` is ``metadata``."""
    signature = getattr(metadata, "signature", None)
    if signature is None:
        return V2Model(name, version)
    inputs = signature.inputs
    outputs = signature.outputs
    return V2Model(
        name,
        version,
        inputs=_tensors(inputs, "input-", first=0),
        outputs=_tensors(outputs, "output-", first=1) if outputs is not None else (),
        content_type=_request_content_type(inputs),
    )


def _tensors(schema: Any, prefix: str, *, first: int) -> tuple[TensorMetadata, ...]:
    tensors = []
    for index, spec in enumerate(schema.inputs):
        datatype, content_type, shape = _describe(spec)
        name = spec.name if spec.name else f"{prefix}{index + first}"
        tensors.append(TensorMetadata(name, datatype, shape, content_type))
    return tuple(tensors)


def _describe(spec: Any) -> tuple[str, str, tuple[int, ...]]:
    schema_types: Any = importlib.import_module("mlflow.types.schema")
    if isinstance(spec, schema_types.TensorSpec):
        return numpy_datatype(spec.type), "np", tuple(spec.shape)
    if isinstance(spec.type, schema_types.DataType):
        datatype, content_type = COLUMN_TYPES.get(spec.type.name, JSON_COLUMN)
    else:  # Array, Object, Map, AnyType
        datatype, content_type = JSON_COLUMN
    return datatype, content_type, (-1, 1)


def _request_content_type(schema: Any) -> str:
    if schema.is_tensor_spec():
        return "dict" if schema.has_input_names() else "np"
    return "pd"
