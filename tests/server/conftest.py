"""Fixtures for the scoring app: kiln's app and MLflow's own, served by uvicorn over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kiln.server.app import create_app
from kiln.settings import RuntimeSettings
from tests.server.serving import ProcessServer, ThreadServer


@pytest.fixture(scope="session")
def pyfunc(model_dir: Callable[[str], Path]) -> Callable[[str], Any]:
    """``pyfunc("sklearn_iris")``: the scenario loaded with mlflow.pyfunc.load_model, for comparisons."""
    import mlflow.pyfunc

    loaded: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in loaded:
            loaded[name] = mlflow.pyfunc.load_model(str(model_dir(name)))
        return loaded[name]

    return get


@pytest.fixture(scope="session")
def kiln_url(model_dir: Callable[[str], Path]) -> Iterator[Callable[..., str]]:
    """``kiln_url("sklearn_iris", max_body_size=1024)``: base URL of kiln's app in a uvicorn thread."""
    servers: dict[tuple[Any, ...], ThreadServer] = {}

    def get(name: str, **settings: Any) -> str:
        key = (name, *sorted(settings.items()))
        if key not in servers:
            config = RuntimeSettings(model_dir=str(model_dir(name)), **settings)
            servers[key] = ThreadServer(create_app(config)).start()
        return servers[key].url

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="session")
def mlflow_url(pyfunc: Callable[[str], Any]) -> Iterator[Callable[[str], str]]:
    """``mlflow_url("sklearn_iris")``: base URL of MLflow's own scoring app (scoring_server.init)."""
    from mlflow.pyfunc import scoring_server

    servers: dict[str, ThreadServer] = {}

    def get(name: str) -> str:
        if name not in servers:
            servers[name] = ThreadServer(scoring_server.init(pyfunc(name))).start()
        return servers[name].url

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture
def process_server(
    model_dir: Callable[[str], Path], tmp_path: Path
) -> Iterator[Callable[..., ProcessServer]]:
    """``process_server("slow_predict", KILN_REQUEST_TIMEOUT="1")``: kiln's app in its own process.

    ``wait=False`` returns it still loading; call ``.start()`` to wait for it.
    """
    started: list[ProcessServer] = []

    def start(name: str, *, wait: bool = True, **env: str) -> ProcessServer:
        server = ProcessServer(model_dir(name), env, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server.start() if wait else server

    yield start
    for server in started:
        server.stop()
