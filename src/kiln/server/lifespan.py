"""The ASGI lifespan: load the model before uvicorn accepts a connection, or fail cleanly.

In a worker the zygote forked (``kiln.runtime.zygote``), ``preload`` already ran before the
fork: the lifespan then takes the loaded model and its predictor instead of loading again.

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
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from kiln.errors import KilnError
from kiln.server.loader import load_model
from kiln.server.predict import Predictor
from kiln.server.state import ServerState
from kiln.server.timeout import PredictLane
from kiln.server.v2.metadata import describe_model
from kiln.settings import RuntimeSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preloaded:
    """The model and its predictor, loaded in the zygote and shared copy-on-write with its forks."""

    model_dir: str
    model: Any
    predictor: Predictor


_preloaded: list[Preloaded] = []
"""At most one: what ``preload`` loaded in this process (before the fork that made a worker)."""


def preload(settings: RuntimeSettings) -> Preloaded:
    """Load the model and prepare its predictor now, synchronously, for workers forked later.

    Raises what ``load_model`` raises (ModelError for the model's own failures).
    """
    model = load_model(settings)
    loaded = Preloaded(settings.model_dir, model, Predictor(model))
    _preloaded[:] = [loaded]
    return loaded


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
            log_failure(exc)  # uvicorn adds "Application startup failed. Exiting."
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
    found = [p for p in _preloaded if p.model_dir == settings.model_dir]
    if found:
        model, predictor = found[0].model, found[0].predictor
    else:
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


def log_failure(exc: KilnError) -> None:
    """Log why the model could not be loaded: kiln's message, and the model's own traceback."""
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
