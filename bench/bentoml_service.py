"""The BentoML service of the serving benchmark: the MLflow model at ``$KILN_BENCH_MODEL`` on /invocations.

``bentoml serve bentoml_service:Plain`` answers one request per ``predict`` call;
``bentoml serve bentoml_service:Batched`` uses BentoML's adaptive batching
(``batchable=True``, ``$KILN_BENCH_MAX_BATCH_SIZE`` and ``$KILN_BENCH_MAX_LATENCY_MS``). Its input is
an ndarray, rebuilt into the signature's DataFrame inside the batch: BentoML 1.4.40 cannot batch a
DataFrame input (``PandasDataFrameContainer.get_batch_size`` returns ``shape``, a tuple, and every
batched request then waits out the 60 s timeout). Both take
the benchmark's body, ``{"dataframe_split": {"columns": [...], "data": [...]}}``, and answer
the predictions: ``{"predictions": [...]}`` (Plain) or the bare list (Batched: BentoML splits the
batch's ndarray back per request and sends each part as it is). It runs in its own venv
(``.cache/bench/bentoml-venv``), not in kiln's.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import bentoml
import mlflow.pyfunc
import numpy as np
import pandas as pd
from pydantic import BeforeValidator

MODEL = os.environ.get("KILN_BENCH_MODEL", "")
MAX_BATCH_SIZE = max(2, int(os.environ.get("KILN_BENCH_MAX_BATCH_SIZE", "256")))
MAX_LATENCY_MS = int(os.environ.get("KILN_BENCH_MAX_LATENCY_MS", "1000"))


def _split_frame(value: Any) -> Any:
    """MLflow's ``dataframe_split`` object as a DataFrame (BentoML's own DataFrame input takes records)."""
    if isinstance(value, dict) and "data" in value:
        return pd.DataFrame(value["data"], columns=value.get("columns"))
    return value


def _split_rows(value: Any) -> Any:
    """The rows of MLflow's ``dataframe_split`` object as a float array, for the batched API."""
    if isinstance(value, dict) and "data" in value:
        return np.asarray(value["data"], dtype=np.float64)
    return value


SplitFrame = Annotated[pd.DataFrame, BeforeValidator(_split_frame)]
SplitRows = Annotated[np.ndarray, BeforeValidator(_split_rows)]


@bentoml.service(workers=1)
class Plain:
    def __init__(self) -> None:
        self.model = mlflow.pyfunc.load_model(MODEL)

    @bentoml.api(route="/invocations")
    def invocations(self, dataframe_split: SplitFrame) -> dict[str, Any]:
        return {"predictions": np.asarray(self.model.predict(dataframe_split)).tolist()}


@bentoml.service(workers=1)
class Batched:
    def __init__(self) -> None:
        self.model = mlflow.pyfunc.load_model(MODEL)
        self.columns = self.model.metadata.get_input_schema().input_names()

    @bentoml.api(
        route="/invocations", batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS
    )
    def invocations(self, dataframe_split: SplitRows) -> np.ndarray:
        frame = pd.DataFrame(dataframe_split, columns=self.columns)
        return np.asarray(self.model.predict(frame))
