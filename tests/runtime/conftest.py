"""Fixtures that start the real runtime on free ports and always clean it up."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.runtime.running import (
    Running,
    free_port,
    remove_dir,
    running,
    runtime_command,
    runtime_env,
    short_tmp_dir,
)

StartRuntime = Callable[..., Running]


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[StartRuntime]:
    """``start_runtime(model, env={...}, args=("serve",))``: ``python -m kiln.runtime`` on a free port."""
    with ExitStack() as stack:

        def start(
            model: Path,
            env: Mapping[str, str] | None = None,
            args: Sequence[str] = (),
            runtime_dir: Path | None = None,
        ) -> Running:
            port = free_port()
            if runtime_dir is None:
                runtime_dir = short_tmp_dir("kiln-rt-")
                stack.callback(remove_dir, runtime_dir)
            full_env = runtime_env(model, port, runtime_dir, env)
            return stack.enter_context(
                running(runtime_command(*args), full_env, port, runtime_dir, tmp_path / "logs")
            )

        yield start


@pytest.fixture(scope="session")
def iris_runtime(
    model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """One ``python -m kiln.runtime serve`` of sklearn_iris through nginx, shared by read-only tests.

    Two workers from MLflow's variable, a 64 KiB body limit.
    """
    model = model_dir("sklearn_iris")
    port = free_port()
    runtime_dir = short_tmp_dir("kiln-rt-")
    env = runtime_env(model, port, runtime_dir, {"MLFLOW_MODELS_WORKERS": "2", "KILN_MAX_BODY_SIZE": "64k"})
    log_dir = tmp_path_factory.mktemp("iris-runtime")
    try:
        with running(runtime_command("serve"), env, port, runtime_dir, log_dir) as run:
            run.wait_ready()
            yield run
    finally:
        remove_dir(runtime_dir)
