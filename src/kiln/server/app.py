"""``create_app(settings)``: the ASGI scoring app that each uvicorn worker serves."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp

from kiln.server import handlers
from kiln.server.docs import ApiDocs
from kiln.server.invocations import Dispatch, MlflowScoring, ScoringEndpoint
from kiln.server.lifespan import Lifespan
from kiln.server.metrics import Metrics, MetricsMiddleware
from kiln.server.state import ServerState
from kiln.server.streaming import Streams
from kiln.server.v2.routes import v2_routes
from kiln.settings import RuntimeSettings


def create_app(settings: RuntimeSettings, *, on_ready: Callable[[], None] | None = None) -> ASGIApp:
    """The scoring app for the model at ``settings.model_dir``.

    Its lifespan loads the model (in a thread), prepares the predictor and then calls
    ``on_ready()``; uvicorn accepts connections only after that. If loading fails the
    loader's message is logged and the lifespan reports the failure: uvicorn logs
    "Application startup failed. Exiting." and ``Server.run`` exits with status 3
    (``sys.exit``) before ever accepting a connection. The OpenAPI document
    (``/openapi.json``, ``/docs``) is built once the model has loaded, before ``on_ready``.

    The layers, outside in: metrics (unless ``settings.metrics`` is False), the
    lifespan, ``POST /invocations`` straight to its endpoint, Starlette for the rest,
    the Open Inference Protocol's ``/v2`` routes among them (unless ``settings.v2`` is False).
    """
    metrics = Metrics() if settings.metrics else None
    state = ServerState(settings=settings, metrics=metrics)
    invocations = ScoringEndpoint(state, MlflowScoring(state), Streams(state))
    docs = ApiDocs(state)
    routes = [
        Route("/ping", handlers.ping, methods=["GET"]),
        Route("/health", handlers.ping, methods=["GET"]),
        Route("/version", handlers.version, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/metrics", handlers.metrics, methods=["GET"]),
        Route("/openapi.json", docs.openapi_json, methods=["GET"]),
        Route("/docs", docs.docs_page, methods=["GET"]),
    ]
    if settings.v2:
        routes += v2_routes(state)
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: handlers.http_error, Exception: handlers.server_error},
    )
    app.state.kiln = state
    scoring: ASGIApp = Lifespan(Dispatch(app, invocations), state, _then(docs.build, on_ready))
    if metrics is not None:
        scoring = MetricsMiddleware(scoring, metrics)
    return scoring


def _then(first: Callable[[], None], then: Callable[[], None] | None) -> Callable[[], None]:
    def both() -> None:
        first()
        if then is not None:
            then()

    return both
