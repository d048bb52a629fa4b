"""Request bodies -> the data and params handed to the model, with MLflow's semantics.

Mirrors ``mlflow.pyfunc.scoring_server``: JSON objects with exactly one of
``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs`` (plus an optional
``params``), LLM-style unwrapped bodies (``messages``/``prompt``/``input``), CSV with a
header row and parquet. The conversions themselves (DataFrame construction, casting
to the input schema, tensor parsing) are MLflow's own functions from
``mlflow.utils.proto_json_utils``, so the model sees exactly what MLflow would give it.
"""

from __future__ import annotations

import importlib
import io
import json
from dataclasses import dataclass
from typing import Any

import orjson

from kiln.server import wording
from kiln.server.content import MediaKind
from kiln.server.errors import BAD_REQUEST, INVALID_PARAMETER_VALUE, ScoringFailure, failure_from_mlflow
from kiln.server.fastframe import FastFrame

DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS = wording.FORMATS
FORMATS = wording.FORMATS
PARAMS_KEY = "params"
LLM_KEYS = wording.LLM_KEYS


@dataclass(frozen=True)
class ParsedRequest:
    """What one request asks of the model."""

    data: Any
    params: Any
    """Usually a dict or None; anything else is rejected by the params schema check, like MLflow."""
    unwrapped: bool = False
    """LLM-style request: the answer is the prediction itself, not ``{"predictions": ...}``."""
    conforms: bool = False
    """``data`` is a DataFrame of exactly the signature's columns, in the signature's order, each
    with the signature's dtype: what MLflow's schema enforcement would hand the model."""


@dataclass(frozen=True)
class InputContract:
    """What the model's metadata says about its inputs, read once at start-up."""

    input_schema: Any = None
    """``mlflow.types.Schema`` or None."""
    param_names: frozenset[str] = frozenset()
    signature_from_type_hint: bool = False
    fast_frame: FastFrame | None = None

    @classmethod
    def of(cls, metadata: Any) -> InputContract:
        """Read the contract from a PyFuncModel's ``metadata`` (an ``mlflow.models.Model``)."""
        params_schema = metadata.get_params_schema() if hasattr(metadata, "get_params_schema") else None
        names = frozenset(p.name for p in params_schema.params) if params_schema is not None else frozenset()
        from_hint = getattr(metadata, "_is_signature_from_type_hint", None)
        input_schema = metadata.get_input_schema()
        return cls(
            input_schema=input_schema,
            param_names=names,
            signature_from_type_hint=bool(from_hint()) if callable(from_hint) else False,
            fast_frame=FastFrame.prepare(input_schema, loader_module=_loader_module(metadata)),
        )


def _loader_module(metadata: Any) -> str | None:
    flavors = getattr(metadata, "flavors", None) or {}
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    return pyfunc.get("loader_module") if isinstance(pyfunc, dict) else None


def parse_request(body: bytes, kind: MediaKind, contract: InputContract) -> ParsedRequest:
    """Parse one request body; ScoringFailure (400) for anything malformed."""
    if kind == "json":
        return parse_json(body, contract)
    if kind == "csv":
        return ParsedRequest(parse_csv(body, contract.input_schema), None)
    return ParsedRequest(parse_parquet(body), None)


def decode_json(body: bytes) -> Any:
    """The JSON value of ``body``; orjson first, the standard library for what orjson refuses.

    The fallback keeps MLflow's leniency (``NaN``/``Infinity`` literals, integers beyond
    64 bits) and MLflow's error for invalid JSON or invalid UTF-8.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except RecursionError:
        raise ScoringFailure(
            "Invalid input. The JSON is nested more deeply than the server parses "
            "(about 1000 levels of arrays and objects at most)",
            error_code=BAD_REQUEST,
        ) from None
    except ValueError as exc:  # invalid JSON or UTF-8; an integer longer than Python converts
        raise ScoringFailure(wording.invalid_json(exc, body), error_code=BAD_REQUEST) from exc


def parse_json(body: bytes, contract: InputContract) -> ParsedRequest:
    obj = decode_json(body)
    if not isinstance(obj, dict):
        raise ScoringFailure(wording.not_an_object(obj))
    if any(key in obj for key in LLM_KEYS):
        llm_data = {k: v for k, v in obj.items() if k not in contract.param_names}
        llm_params = {k: v for k, v in obj.items() if k in contract.param_names}
        return ParsedRequest(llm_data, llm_params, unwrapped=True)
    params = obj.get(PARAMS_KEY)
    found = [key for key in obj if key in FORMATS]
    if contract.signature_from_type_hint:
        # MLflow passes ``inputs`` untouched: the model's type hints do the validation.
        if INPUTS not in obj:
            raise ScoringFailure(
                "Request payload must be a dictionary with 'inputs' key when the model contains a "
                f"valid type hint. Found keys in payload: dict_keys({found}). "
                "Send the model's input as the value of 'inputs'.",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return ParsedRequest(obj[INPUTS], params)
    if len(found) != 1:
        raise ScoringFailure(wording.not_one_format(list(obj), found))
    key = found[0]
    value = obj[key]
    fast = contract.fast_frame
    if fast is not None and key in (DF_SPLIT, DF_RECORDS):
        frame = fast.split(value) if key == DF_SPLIT else fast.records(value)
        if frame is not None:
            return ParsedRequest(frame, params, conforms=True)
    return ParsedRequest(_parse_format(key, value, contract.input_schema), params)


def _parse_format(key: str, value: Any, schema: Any) -> Any:
    proto_json_utils: Any = importlib.import_module("mlflow.utils.proto_json_utils")

    try:
        if key in (INSTANCES, INPUTS):
            return proto_json_utils.parse_tf_serving_input({key: value}, schema=schema)
        orient = "split" if key == DF_SPLIT else "records"
        return proto_json_utils.dataframe_from_parsed_json(value, pandas_orient=orient, schema=schema)
    except Exception as exc:
        raise failure_from_mlflow(exc) from exc


def parse_csv(body: bytes, schema: Any) -> Any:
    """A DataFrame from CSV with a header row, column types from the input schema (MLflow's rule)."""
    import pandas as pd

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScoringFailure(f"{wording.INVALID_UTF8} Error: '{exc!r}'") from exc
    try:
        if schema is None:
            return pd.read_csv(io.StringIO(text))
        dtypes = dict(zip(schema.input_names(), schema.pandas_types()))
        return pd.read_csv(io.StringIO(text), dtype=dtypes)
    except Exception as exc:
        raise ScoringFailure(
            f"{wording.BAD_CSV} Error: '{exc}'. The first row must name the columns."
        ) from exc


def parse_parquet(body: bytes) -> Any:
    import pandas as pd

    if not _parquet_engine_available():
        raise ScoringFailure(
            "parquet input needs pyarrow (or fastparquet), which is not installed in the model's "
            "environment; send application/json or text/csv, or add pyarrow to the model's requirements",
            status=415,
        )
    try:
        return pd.read_parquet(io.BytesIO(body))
    except Exception as exc:
        raise ScoringFailure(f"{wording.BAD_PARQUET} Error: '{exc}'") from exc


_ENGINE: list[bool] = []


def _parquet_engine_available() -> bool:
    if not _ENGINE:
        import importlib.util

        _ENGINE.append(any(importlib.util.find_spec(name) for name in ("pyarrow", "fastparquet")))
    return _ENGINE[0]
