"""The prediction path: MLflow's ``PyFuncModel.predict``, with a prepared fast path.

MLflow's ``predict`` re-reads the signature and re-checks every column on every call.
``Predictor`` reads the signature once. For the common case -- a ColSpec signature of
named scalar columns and a DataFrame whose columns already have exactly the dtypes
MLflow would accept unchanged -- it does what MLflow's enforcement would do (select and
order the signature's columns, enforce params with MLflow's own function) and calls the
flavour's predict function directly. Every other input, and every input the fast path
is not sure about (a missing column, a dtype MLflow would cast or reject, duplicate
columns), goes through ``model.predict(data, params=...)`` untouched, so errors are
MLflow's own.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from typing import Any

from kiln.server import wording
from kiln.server.errors import BAD_REQUEST, ScoringFailure, failure_from_mlflow
from kiln.server.fastpath import FastPath
from kiln.server.parsing import InputContract

logger = logging.getLogger(__name__)


class Predictor:
    """Everything about a loaded model that can be prepared before the first request."""

    def __init__(self, model: Any, *, fast_path: bool = True) -> None:
        self.model = model
        self.contract = InputContract.of(model.metadata)
        self._accepts_params = "params" in inspect.signature(model.predict).parameters
        self.fast: FastPath | None = FastPath.prepare(model) if fast_path else None
        if self.fast is None:
            logger.info("predictions go through MLflow's PyFuncModel.predict (no fast path for this model)")
        else:
            logger.info("fast path prepared for columns %s", list(self.fast.names))

    def predict(self, data: Any, params: Any, *, conforms: bool = False) -> Any:
        """The model's prediction for ``data``; ScoringFailure with MLflow's status and code on error.

        ``conforms``: the parser built ``data`` with exactly the signature's columns and dtypes.
        """
        try:
            if self.fast is not None:
                done, result = self.fast.try_predict(data, params, conforms=conforms)
                if done:
                    return result
            if self._accepts_params:
                return self.model.predict(data, params=params)
            if params:
                logger.warning("the model's predict takes no params; ignoring %s", params)
            return self.model.predict(data)
        except Exception as exc:
            raise _failure(exc, data) from exc


def _failure(exc: Exception, data: Any) -> ScoringFailure:
    if hasattr(exc, "get_http_status_code") and isinstance(getattr(exc, "message", None), str):
        # An MlflowException: schema enforcement, params, or one the model raised on purpose.
        return failure_from_mlflow(exc, prefix=f"Failed to predict data '{_shorten(data)}'. \nError: ")
    return ScoringFailure(
        f"{wording.PREDICT_FAILED} Error: {type(exc).__name__}: {exc}",
        status=400,
        error_code=BAD_REQUEST,
        stack_trace="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )


def _shorten(data: Any, limit: int = 1000) -> str:
    text = str(data)
    return text if len(text) <= limit else text[:limit] + "..."
