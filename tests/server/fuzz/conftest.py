"""One real runtime per mode (behind nginx, uvicorn alone) for sklearn_iris, shared by the fuzz tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server.fuzz.target import FuzzTarget, Probe, fuzz_target, iris_probe


@pytest.fixture(scope="session")
def iris_probe_answer(model_dir: Callable[[str], Path]) -> Probe:
    return iris_probe(model_dir("sklearn_iris"))


@pytest.fixture(scope="session")
def nginx_target(
    model_dir: Callable[[str], Path], iris_probe_answer: Probe, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    """sklearn_iris behind real nginx, two uvicorn workers."""
    log_dir = tmp_path_factory.mktemp("fuzz-nginx")
    model = model_dir("sklearn_iris")
    with fuzz_target(model, nginx=True, log_dir=log_dir, probe=iris_probe_answer) as target:
        yield target


@pytest.fixture(scope="session")
def direct_target(
    model_dir: Callable[[str], Path], iris_probe_answer: Probe, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    """sklearn_iris with DISABLE_NGINX: two uvicorn workers on the TCP port."""
    log_dir = tmp_path_factory.mktemp("fuzz-direct")
    model = model_dir("sklearn_iris")
    with fuzz_target(model, nginx=False, log_dir=log_dir, probe=iris_probe_answer) as target:
        yield target


@pytest.fixture(params=["nginx", "direct"])
def target(request: pytest.FixtureRequest) -> FuzzTarget:
    """Each test that takes ``target`` runs once behind nginx and once without."""
    found: FuzzTarget = request.getfixturevalue(f"{request.param}_target")
    return found
