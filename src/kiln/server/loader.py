"""Load the model directory through MLflow's pyfunc loader, as MLflow's scoring server does."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from kiln.errors import ModelError
from kiln.model.info import read_model_info
from kiln.settings import RuntimeSettings

logger = logging.getLogger(__name__)

SERVING_ENV_FLAG = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"
"""MLflow's own marker that some flavours read to behave as in ``mlflow models serve``."""


def load_model(settings: RuntimeSettings) -> Any:
    """The ``PyFuncModel`` at ``settings.model_dir``; ModelError naming the path and the cause.

    ``settings.model_config`` (``SERVING_MODEL_CONFIG``) is passed to the loader as
    ``model_config``. A directory that is not a pyfunc model is refused before MLflow
    is imported.
    """
    info = read_model_info(settings.model_dir)
    os.environ[SERVING_ENV_FLAG] = "true"
    started = time.monotonic()
    try:
        import mlflow.pyfunc
    except ImportError as exc:
        raise ModelError(
            f"cannot load model {settings.model_dir!r}: MLflow is not installed in this environment ({exc})",
            hint="the model's requirements.txt should pin mlflow",
        ) from exc
    kwargs: dict[str, Any] = {}
    if settings.model_config is not None:
        kwargs["model_config"] = dict(settings.model_config)
    try:
        model = mlflow.pyfunc.load_model(str(info.path), **kwargs)
    except Exception as exc:
        raise ModelError(
            f"loading model {settings.model_dir!r} (loader {info.loader_module or 'unknown'}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    logger.info(
        "loaded model %s (flavours: %s) in %.2f s",
        settings.model_dir,
        ", ".join(info.flavors),
        time.monotonic() - started,
    )
    return model
