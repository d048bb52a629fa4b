"""The fast path around MLflow's schema enforcement, for DataFrames that already conform.

``FastPath.prepare(model)`` returns None unless the model is a plain ``PyFuncModel``
whose signature is a ColSpec schema of named scalar columns (no tensors, arrays,
objects, maps or type-hint signatures). ``try_predict`` then accepts a DataFrame only
when every signature column is present once and has a dtype that MLflow's
``_enforce_mlflow_datatype`` returns unchanged; it answers ``(False, None)`` for
anything else, and the caller uses ``model.predict``. What it does for an accepted
DataFrame is what ``PyFuncModel.predict`` does: select the signature's columns in
order (extra columns are dropped with MLflow's warning), enforce params with MLflow's
``_enforce_params_schema``, and call the flavour's predict function inside the same
prediction context.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from packaging.version import Version

logger = logging.getLogger(__name__)

MIN_MLFLOW = Version("2.10")
"""Oldest MLflow whose PyFuncModel internals the fast path was checked against."""


@dataclass(frozen=True)
class FastPath:
    names: tuple[str, ...]
    types: tuple[Any, ...]
    """The MLflow ``DataType`` of each column in ``names``."""
    predict_fn: Callable[..., Any]
    pass_params: bool
    params_schema: Any
    enforce_params: Callable[[Any, Any], Any]
    context: Callable[[], Any]
    accepted: dict[Any, bool]
    """dtype -> whether MLflow leaves a column of that dtype unchanged, per column index."""

    @classmethod
    def prepare(cls, model: Any) -> FastPath | None:
        try:
            return _prepare(model)
        except Exception:  # any surprise in MLflow's internals: no fast path, MLflow's predict
            logger.debug("no fast path for this model", exc_info=True)
            return None

    def try_predict(self, data: Any, params: Any, *, conforms: bool = False) -> tuple[bool, Any]:
        """``(True, prediction)`` if the fast path applies to ``data``, else ``(False, None)``.

        ``conforms``: the parser guarantees the columns are exactly the signature's, in its
        order and with its dtypes, so the checks are skipped.
        """
        import pandas as pd

        if type(data) is not pd.DataFrame:
            return False, None
        columns = data.columns
        if conforms:
            pass
        elif not self._conforms(data):
            return False, None
        elif len(columns) != len(self.names) or tuple(columns) != self.names:
            extra = [c for c in columns if c not in self.names]
            if extra:
                logger.warning(
                    "Found extra inputs in the model input that are not defined in the model "
                    "signature: `%s`. These inputs will be ignored.",
                    extra,
                )
            data = data[list(self.names)]
        params = self.enforce_params(params, self.params_schema)
        with self.context():
            if self.pass_params:
                return True, self.predict_fn(data, params=params)
            if params:
                logger.warning("the model's predict function takes no params; ignoring %s", params)
            return True, self.predict_fn(data)

    def _conforms(self, data: Any) -> bool:
        """Every signature column present once, with a dtype MLflow leaves unchanged."""
        columns = data.columns
        if not columns.is_unique:
            return False
        dtypes = data.dtypes
        for index, name in enumerate(self.names):
            if name not in columns:
                return False
            dtype = dtypes[name]
            key = (index, dtype)
            ok = self.accepted.get(key)
            if ok is None:
                ok = self.accepted[key] = _accepts(self.types[index], dtype)
            if not ok:
                return False
        return True


def _prepare(model: Any) -> FastPath | None:
    mlflow: Any = importlib.import_module("mlflow")
    pyfunc: Any = importlib.import_module("mlflow.pyfunc")
    models_utils: Any = importlib.import_module("mlflow.models.utils")
    schema_types: Any = importlib.import_module("mlflow.types.schema")
    ColSpec, DataType = schema_types.ColSpec, schema_types.DataType

    if Version(mlflow.__version__).release < MIN_MLFLOW.release:
        return None
    if type(model) is not pyfunc.PyFuncModel:
        return None
    metadata = model.metadata
    for check in ("_is_signature_from_type_hint", "_is_type_hint_from_example"):
        method = getattr(metadata, check, None)
        if callable(method) and method():
            return None
    schema = metadata.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    inputs = schema.inputs
    if not all(isinstance(spec, ColSpec) and isinstance(spec.type, DataType) for spec in inputs):
        return None
    predict_fn = model._predict_fn
    params_arg = inspect.signature(predict_fn).parameters.get("params")
    pass_params = params_arg is not None and params_arg.kind != inspect.Parameter.VAR_KEYWORD
    return FastPath(
        names=tuple(spec.name for spec in inputs),
        types=tuple(spec.type for spec in inputs),
        predict_fn=predict_fn,
        pass_params=pass_params,
        params_schema=metadata.get_params_schema(),
        enforce_params=models_utils._enforce_params_schema,
        context=_context_factory(model),
        accepted={},
    )


def _context_factory(model: Any) -> Callable[[], Any]:
    """What ``PyFuncModel.predict`` wraps the flavour's predict in: the prediction context."""
    pyfunc: Any = importlib.import_module("mlflow.pyfunc")
    context_module: Any = importlib.import_module("mlflow.pyfunc.context")
    tracing_utils: Any = importlib.import_module("mlflow.tracing.utils")
    Context, set_prediction_context = context_module.Context, context_module.set_prediction_context
    _try_get_prediction_context = tracing_utils._try_get_prediction_context

    schema = pyfunc._get_dependencies_schema_from_model(model._model_meta)
    model_id = getattr(model, "model_id", None)

    def context() -> Any:
        ctx = _try_get_prediction_context() or Context()
        if schema:
            ctx.update(**schema)
        if model_id:
            ctx.update(model_id=model_id)
        return set_prediction_context(ctx)

    return context


def _accepts(t: Any, dtype: Any) -> bool:
    """Whether ``_enforce_mlflow_datatype`` returns a column of ``dtype`` unchanged for type ``t``."""
    import numpy as np
    import pandas as pd
    from mlflow.types.schema import DataType

    is_string_dtype = isinstance(dtype, pd.StringDtype)
    if t == DataType.string:
        return bool(dtype == np.dtype(object) or is_string_dtype)
    if t == DataType.binary and is_string_dtype:
        return True
    if dtype == np.dtype(object) and t != DataType.binary:
        return False  # MLflow would call infer_objects first
    return bool(t.to_pandas() == dtype or t.to_numpy() == dtype)
