"""The ASGI lifespan: load the model before uvicorn accepts a connection, or fail cleanly.

On failure the loader's message is logged (without a kiln traceback for a user's mistake;
with the model's own traceback when its code raised) and the app answers
``lifespan.startup.failed``: uvicorn logs "Application startup failed. Exiting." and exits
with status 3.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from kiln.errors import KilnError
from kiln.server.loader import load_model
from kiln.server.predict import Predictor
from kiln.server.state import ServerState
from kiln.server.timeout import PredictLane
from kiln.server.v2.metadata import describe_model

logger = logging.getLogger(__name__)


class Lifespan:
    """Handles ``lifespan`` scopes; passes everything else to ``app``."""

    def __init__(self, app: ASGIApp, state: ServerState, on_ready: Callable[[], None] | None) -> None:
        self.app = app
        self.state = state
        self.on_ready = on_ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        await receive()  # lifespan.startup
        try:
            await load(self.state)
        except KilnError as exc:
            _log_failure(exc)  # uvicorn adds "Application startup failed. Exiting."
            await send({"type": "lifespan.startup.failed", "message": ""})
            return
        except Exception as exc:  # a bug in kiln or MLflow: the whole traceback
            message = f"the scoring server cannot start: {exc!r}\n{traceback.format_exc()}"
            await send({"type": "lifespan.startup.failed", "message": message})
            return
        if self.on_ready is not None:
            self.on_ready()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        if self.state.lane is not None:
            self.state.lane.close()
        await send({"type": "lifespan.shutdown.complete"})


async def load(state: ServerState) -> None:
    """Load the model and prepare the predictor and the predict lane (the loading runs in a thread)."""
    settings = state.settings
    model = await asyncio.to_thread(load_model, settings)
    predictor = await asyncio.to_thread(Predictor, model)
    state.mlflow_version = _mlflow_version()
    metrics = state.metrics
    state.lane = PredictLane(
        settings.request_timeout,
        on_timeout=metrics.predict_timeout if metrics is not None else None,
    )
    if settings.v2:
        state.v2 = describe_model(
            model.metadata, name=settings.v2_model_name, version=settings.v2_model_version
        )
    state.predictor = predictor


def _log_failure(exc: KilnError) -> None:
    logger.error("the scoring server cannot start: %s", exc.format())
    cause = exc.__cause__
    if cause is not None:  # the model's own code raised: its traceback helps its author
        trace = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        logger.error("the model's loader raised:\n%s", trace)


def _mlflow_version() -> str:
    try:
        from mlflow.version import VERSION
    except ImportError:  # pragma: no cover - MLflow is what loaded the model
        return "unknown"
    return str(VERSION)
