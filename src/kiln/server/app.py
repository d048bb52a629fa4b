"""``create_app(settings)``: the ASGI scoring app (Starlette) that each uvicorn worker serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp

from kiln.errors import KilnError
from kiln.runtime.settings import RuntimeSettings
from kiln.server import handlers
from kiln.server.invocations import Dispatch, Invocations
from kiln.server.loader import load_model
from kiln.server.metrics import Metrics, MetricsMiddleware
from kiln.server.predict import Predictor
from kiln.server.state import ServerState
from kiln.server.timeout import PredictLane

logger = logging.getLogger(__name__)


def create_app(settings: RuntimeSettings, *, on_ready: Callable[[], None] | None = None) -> ASGIApp:
    """The scoring app for the model at ``settings.model_dir``.

    Its lifespan loads the model (in a thread), prepares the predictor and then calls
    ``on_ready()``; uvicorn accepts connections only after that. If loading fails the
    loader's error is logged and re-raised, so uvicorn reports "Application startup
    failed" and the worker exits without ever serving (``server.started`` stays False).
    """
    metrics = Metrics() if settings.metrics else None
    state = ServerState(settings=settings, metrics=metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _load(state)
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            if state.lane is not None:
                state.lane.close()

    invocations = Invocations(state)
    routes = [
        Route("/ping", handlers.ping, methods=["GET"]),
        Route("/health", handlers.ping, methods=["GET"]),
        Route("/version", handlers.version, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/metrics", handlers.metrics, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: handlers.http_error, Exception: handlers.server_error},
        lifespan=lifespan,
    )
    app.state.kiln = state
    scoring: ASGIApp = Dispatch(app, invocations)
    if metrics is not None:
        scoring = MetricsMiddleware(scoring, metrics)
    return scoring


async def _load(state: ServerState) -> None:
    settings = state.settings
    try:
        model = await asyncio.to_thread(load_model, settings)
        predictor = await asyncio.to_thread(Predictor, model)
    except KilnError as exc:
        logger.error("the scoring server cannot start: %s", exc.format())
        raise
    except Exception:
        logger.exception("the scoring server cannot start: preparing model %s failed", settings.model_dir)
        raise
    state.mlflow_version = _mlflow_version()
    metrics = state.metrics
    state.lane = PredictLane(
        settings.request_timeout,
        on_timeout=metrics.predict_timeout if metrics is not None else None,
    )
    state.predictor = predictor


def _mlflow_version() -> str:
    try:
        from mlflow.version import VERSION
    except ImportError:  # pragma: no cover - MLflow is what loaded the model
        return "unknown"
    return str(VERSION)
