"""A request's tensors -> what the model's ``predict`` takes, by MLServer's rules for MLflow models.

First each input is decoded by its content type: its own ``parameters.content_type``, else
the one the signature gives a tensor of that name (``np``: a numpy array of the datatype,
reshaped to ``shape``; ``str``: a list of str; ``base64``: a list of bytes; ``datetime``:
a list of datetimes; any other: the data as sent). Then the request's content type (its
own, else the signature's) builds the model input:

======  ========================================================================================
``pd``  a DataFrame with one column per input (a decoded array flattened to its first axis;
        BYTES kept as sent; ``pd_json`` inputs parsed element by element)
``np``  the one input as a numpy array
``str`` the one input as a list of str
``dict`` a dict of input name -> decoded input
======  ========================================================================================

Where MLServer would fail with a stack trace (a shape its reshape cannot take, a value its
dtype refuses, an unknown content type), kiln answers 400 saying what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Callable, Mapping
from typing import Any

from kiln.server.v2.errors import V2Failure
from kiln.server.v2.metadata import V2Model
from kiln.server.v2.tensors import DATATYPES, InferRequest, Tensor

REQUEST_CONTENT_TYPES = ("pd", "np", "str", "dict")


def decode_request(request: InferRequest, model: V2Model) -> Any:
    """The model input for ``request``; V2Failure 400 when the tensors cannot make one."""
    content_type = request.content_type or model.content_type
    if content_type is None:
        raise V2Failure(
            "the model has no signature, so the request must say how to read its inputs: set "
            f"parameters.content_type to one of {', '.join(REQUEST_CONTENT_TYPES)}"
        )
    if content_type not in REQUEST_CONTENT_TYPES:
        raise V2Failure(
            f"unsupported request content type {content_type!r}; expected one of "
            f"{', '.join(REQUEST_CONTENT_TYPES)} (or none, for the signature's: {model.content_type})"
        )
    signature_types = model.input_content_types
    try:
        decoded = {tensor.name: decode_input(tensor, signature_types) for tensor in request.inputs}
        return _BUILDERS[content_type](request.inputs, decoded)
    except (ValueError, TypeError, OverflowError) as exc:
        raise V2Failure(f"the inputs cannot be decoded as content type {content_type!r}: {exc}") from exc


def decode_input(tensor: Tensor, signature_types: Mapping[str, str]) -> Any:
    """The input decoded by its content type, or None when it has none with a codec."""
    content_type = tensor.content_type or signature_types.get(tensor.name)
    codec = _INPUT_CODECS.get(content_type or "")
    return None if codec is None else codec(tensor)


def to_array(tensor: Tensor) -> Any:
    import numpy as np

    return np.array(tensor.data, dtype=_dtype(tensor)).reshape(tensor.shape)


def _dtype(tensor: Tensor) -> Any:
    import numpy as np

    if tensor.datatype != "BYTES":
        return np.dtype(DATATYPES[tensor.datatype])
    if all(isinstance(item, str) for item in tensor.flat()):
        return np.dtype(str)
    return np.dtype((bytes, tensor.shape[-1] if tensor.shape else 1))


def _strings(tensor: Tensor) -> list[Any]:
    return [item if isinstance(item, str) or item is None else "" for item in tensor.flat()]


def _base64(tensor: Tensor) -> list[bytes]:
    out = []
    for item in tensor.flat():
        raw = item.encode("ascii", "replace") if isinstance(item, str) else bytes(item)
        try:
            out.append(base64.b64decode(raw, validate=True))
        except binascii.Error:  # not base64: MLServer takes the bytes as they are
            out.append(raw)
    return out


def _datetimes(tensor: Tensor) -> list[datetime.datetime]:
    return [datetime.datetime.fromisoformat(item) for item in tensor.flat()]


_INPUT_CODECS: dict[str, Callable[[Tensor], Any]] = {
    "np": to_array,
    "str": _strings,
    "base64": _base64,
    "datetime": _datetimes,
}


def _frame(inputs: tuple[Tensor, ...], decoded: Mapping[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame({tensor.name: _series(tensor, decoded[tensor.name]) for tensor in inputs})


def _series(tensor: Tensor, decoded: Any) -> Any:
    import numpy as np
    import pandas as pd

    if tensor.content_type == "pd_json":
        return pd.Series([json.loads(item) for item in tensor.flat()])
    payload = tensor.data if decoded is None else decoded
    if tensor.datatype == "BYTES":
        return pd.Series(payload)
    if isinstance(payload, np.ndarray):
        payload = payload.reshape(tensor.shape[0], 1).squeeze(axis=1)
    return pd.Series(payload, dtype=_dtype(tensor))


def _single(inputs: tuple[Tensor, ...], content_type: str) -> Tensor:
    if len(inputs) != 1:
        raise V2Failure(
            f"content type {content_type!r} takes exactly one input tensor, the request has {len(inputs)}"
        )
    return inputs[0]


def _array(inputs: tuple[Tensor, ...], decoded: Mapping[str, Any]) -> Any:
    tensor = _single(inputs, "np")
    value = decoded[tensor.name]
    return to_array(tensor) if value is None else value


def _string_list(inputs: tuple[Tensor, ...], decoded: Mapping[str, Any]) -> Any:
    tensor = _single(inputs, "str")
    value = decoded[tensor.name]
    return _strings(tensor) if value is None else value


def _tensor_dict(inputs: tuple[Tensor, ...], decoded: Mapping[str, Any]) -> Any:
    return {t.name: t.data if decoded[t.name] is None else decoded[t.name] for t in inputs}


_BUILDERS: dict[str, Callable[[tuple[Tensor, ...], Mapping[str, Any]], Any]] = {
    "pd": _frame,
    "np": _array,
    "str": _string_list,
    "dict": _tensor_dict,
}
