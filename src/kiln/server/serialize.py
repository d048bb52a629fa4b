"""Predictions -> JSON bytes, with MLflow's conversions and orjson's speed.

MLflow's rules (``_get_jsonable_obj`` and ``NumpyEncoder``): an ndarray becomes nested
lists, a DataFrame a list of records, a Series a list of one-key records (MLflow turns
it into a one-column DataFrame first), numpy scalars their Python value, bytes
base64 (``base64.encodebytes``), datetimes ISO 8601, pydantic models their dump.
NaN and infinities are written as ``NaN``/``Infinity`` like Python's ``json`` does
(MLflow's behaviour; not strict JSON): orjson would write ``null``, so an answer in
which orjson wrote ``null`` is serialised again with the standard library.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


class SerializationError(TypeError):
    """The model returned something that has no JSON form."""


def predictions_json(raw: Any, *, unwrapped: bool = False) -> bytes:
    """``{"predictions": ...}`` (or the bare prediction for LLM-style requests) as bytes."""
    jsonable = to_jsonable(raw)
    payload = jsonable if unwrapped else {"predictions": jsonable}
    try:
        out = orjson.dumps(payload, default=_default, option=_OPTIONS)
    except (orjson.JSONEncodeError, SerializationError):
        # Integers beyond 64 bits, very deep nesting, or a type only json knows: try the
        # standard library, which raises a clear TypeError if it cannot either.
        return _stdlib_dumps(payload)
    if b"null" in out:
        return _stdlib_dumps(payload)
    return out


def to_jsonable(raw: Any) -> Any:
    """MLflow's top-level conversion of a prediction."""
    import numpy as np
    import pandas as pd

    if isinstance(raw, np.ndarray):
        return raw.tolist()
    if isinstance(raw, pd.DataFrame):
        return raw.to_dict(orient="records")
    if isinstance(raw, pd.Series):
        return pd.DataFrame(raw).to_dict(orient="records")
    return raw


def _convert(o: Any) -> tuple[Any, bool]:
    import numpy as np
    import pandas as pd

    if isinstance(o, np.ndarray):
        if o.dtype == object:
            return [_convert(x)[0] for x in o.tolist()], True
        if o.dtype.kind == "S":
            return [_convert(x)[0] for x in o.tolist()], True
        return o.tolist(), True
    if isinstance(o, np.generic):
        return o.item(), True
    if isinstance(o, (bytes, bytearray)):
        return base64.encodebytes(o).decode("ascii"), True
    if isinstance(o, (pd.Timestamp, datetime.date, datetime.datetime, datetime.time)):
        return o.isoformat(), True
    dump = getattr(o, "model_dump", None)
    if callable(dump):
        return dump(), True
    return o, False


def _default(o: Any) -> Any:
    value, converted = _convert(o)
    if not converted:
        raise SerializationError(f"the model's output contains a {type(o).__name__}, which has no JSON form")
    return value


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        value, converted = _convert(o)
        if converted:
            return value
        raise SerializationError(
            f"the model's output contains a {type(o).__name__}, which has no JSON form ({o!r:.200})"
        )


def _stdlib_dumps(payload: Any) -> bytes:
    return json.dumps(payload, cls=_Encoder).encode("utf-8")
