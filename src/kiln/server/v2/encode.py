"""A prediction -> the V2 answer's output tensors, by MLServer's rules for MLflow models.

=========================  =============================================================
the model returned         outputs (response ``parameters.content_type``)
=========================  =============================================================
numpy array                one tensor ``output-1`` (``np``)
DataFrame                  one tensor per column, named after it (``pd``)
dict of numpy arrays       one tensor per key (``dict``)
list of str                one BYTES tensor ``output-1`` (``str``)
=========================  =============================================================

A tensor's shape is the array's, with ``[N]`` written ``[N, 1]``; its data is flat, with NaN as
``null``. A DataFrame column of strings is BYTES with content type ``str``; a column of other
objects BYTES with each element as JSON (``pd_json``). Beyond MLServer, which fails on them:
pandas' string and nullable dtypes map to their datatypes, a Series is answered as a
one-column DataFrame, and a list of numbers as an array.
"""

from __future__ import annotations

import json
from typing import Any

from kiln.server.v2.errors import V2Failure

_NUMPY_DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
DEFAULT_OUTPUT = "output-1"


def numpy_datatype(dtype: Any) -> str:
    """The protocol datatype of a numpy (or pandas) dtype; BYTES for strings and objects."""
    import numpy as np

    numpy_dtype = getattr(dtype, "numpy_dtype", None)  # pandas' nullable Int64, Float64, boolean
    if numpy_dtype is not None and not isinstance(dtype, np.dtype):
        dtype = numpy_dtype
    return _NUMPY_DATATYPES.get(str(dtype), "BYTES")


def encode_prediction(prediction: Any) -> tuple[list[dict[str, Any]], str]:
    """The output tensors of ``prediction`` and the answer's content type."""
    import numpy as np
    import pandas as pd

    if isinstance(prediction, np.ndarray):
        return [array_output(DEFAULT_OUTPUT, prediction)], "np"
    if isinstance(prediction, pd.Series):
        prediction = prediction.to_frame(DEFAULT_OUTPUT if prediction.name is None else prediction.name)
    if isinstance(prediction, pd.DataFrame):
        return [column_output(str(name), prediction[name]) for name in prediction.columns], "pd"
    if (
        isinstance(prediction, dict)
        and prediction
        and all(isinstance(value, np.ndarray) for value in prediction.values())
    ):
        return [array_output(str(name), value) for name, value in prediction.items()], "dict"
    if isinstance(prediction, list) and prediction and all(isinstance(item, str) for item in prediction):
        strings = {"name": DEFAULT_OUTPUT, "shape": [len(prediction), 1], "datatype": "BYTES"}
        return [{**strings, "parameters": {"content_type": "str"}, "data": prediction}], "str"
    if isinstance(prediction, list):
        array = np.asarray(prediction)
        if array.dtype.kind in "biuf":
            return [array_output(DEFAULT_OUTPUT, array)], "np"
    raise V2Failure(
        f"the model returned {type(prediction).__name__}, which has no Open Inference Protocol encoding "
        "here (kiln encodes numpy arrays, DataFrames, Series, dicts of arrays, lists of numbers or "
        "of strings); use the MLflow protocol (POST /invocations) for this model",
        500,
    )


def array_output(name: str, array: Any) -> dict[str, Any]:
    """MLServer's NumpyCodec: shape with ``[N]`` as ``[N, 1]``, data flat, NaN as null."""
    import numpy as np

    datatype = numpy_datatype(array.dtype)
    shape = list(array.shape) if array.ndim > 1 else [*array.shape, 1]
    if datatype == "BYTES":
        data = [_text(item) for item in array.flatten().tolist()]
    else:
        data = array.flatten().tolist()
        if array.dtype.kind == "f" and np.isnan(array).any():
            data = [None if item != item else item for item in data]
    return {
        "name": name,
        "shape": shape,
        "datatype": datatype,
        "parameters": {"content_type": "np"},
        "data": data,
    }


def column_output(name: str, column: Any) -> dict[str, Any]:
    """MLServer's PandasCodec for one column: ``[N, 1]``; strings ``str``, other objects ``pd_json``."""
    datatype = numpy_datatype(column.dtype)
    data = column.tolist()
    if column.isnull().any():
        data = [None if _is_missing(item) else item for item in data]
    output: dict[str, Any] = {"name": name, "shape": [len(data), 1], "datatype": datatype}
    if datatype == "BYTES":
        if all(isinstance(item, (str, bytes)) for item in data):
            data = [_text(item) for item in data]
            output["parameters"] = {"content_type": "str"}
        else:
            data = [_json(item) for item in data]
            output["parameters"] = {"content_type": "pd_json"}
    output["data"] = data
    return output


def _is_missing(item: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(item))
    except (TypeError, ValueError):  # a list or an array: not a missing value
        return False


def _text(item: Any) -> Any:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else item


def _json(item: Any) -> str:
    def default(value: Any) -> Any:
        for method in ("tolist", "isoformat"):  # numpy values; datetimes
            convert = getattr(value, method, None)
            if callable(convert):
                return convert()
        raise TypeError(f"{type(value).__name__} has no JSON form")

    try:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=default)
    except (TypeError, ValueError) as exc:
        raise V2Failure(f"a value of the model's output has no JSON form: {exc}", 500) from exc
