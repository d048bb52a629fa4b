"""One real runtime per mode (behind nginx, uvicorn alone) for sklearn_iris, shared by the fuzz tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.server.fuzz.target import FuzzTarget, fuzz_target, iris_probe


@pytest.fixture(scope="session")
def fuzz_targets(
    model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FuzzTarget]]:
    """sklearn_iris with two uvicorn workers behind real nginx (``nginx``) and with DISABLE_NGINX
    (``direct``), started side by side."""
    model = model_dir("sklearn_iris")
    probe = iris_probe(model)
    with ExitStack() as stack:
        targets = {
            name: stack.enter_context(
                fuzz_target(
                    model,
                    nginx=name == "nginx",
                    log_dir=tmp_path_factory.mktemp(f"fuzz-{name}"),
                    probe=probe,
                    wait=False,
                )
            )
            for name in ("nginx", "direct")
        }
        for target in targets.values():
            target.wait_ready()
        yield targets


@pytest.fixture(params=["nginx", "direct"])
def target(request: pytest.FixtureRequest, fuzz_targets: dict[str, FuzzTarget]) -> FuzzTarget:
    """Each test that takes ``target`` runs once behind nginx and once without."""
    return fuzz_targets[request.param]
