"""The flavour matrix's machinery: build each model's image once per module with ``kiln build``,
run it, score it with the model's own input example, and compare with what MLflow predicts in
this process for the same request.

``MLflow's answer`` is ``mlflow.pyfunc.load_model(model).predict`` on the request parsed by
MLflow's own scoring-server parser, serialised by MLflow's own ``predictions_to_json``: what
``mlflow models serve`` would answer, computed without a server.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from tests.docker_support import BASE_IMAGE
from tests.e2e.conftest import SESSION, kiln
from tests.e2e.containers import container

from kiln import contract
from kiln.backends.docker.builder import DockerBuilder

Backend = Literal["docker", "oci", "agnostic"]
LOCK = "/opt/kiln/requirements.lock"


class BuildFailed(Exception):
    """``kiln build`` exited non-zero; the message holds its output."""


@dataclass(frozen=True)
class FlavourImage:
    """One image of one scenario, built by one backend."""

    scenario: str
    backend: Backend
    tag: str
    output: str
    """What ``kiln build`` printed (stdout and stderr)."""


@dataclass
class FlavourImages:
    """Builds each (scenario, backend) image on first use and removes them all at the end.

    ``docker``: ``--backend docker`` on the test base. ``oci``: ``--backend oci --output docker``
    from a ``docker save`` of the same base. ``agnostic``: ``--env-from`` (no model inside).
    """

    builder: DockerBuilder
    workdir: Path
    built: dict[tuple[str, Backend], FlavourImage] = field(default_factory=dict)
    failed: dict[tuple[str, Backend], str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    _base_archive: Path | None = None

    def get(
        self, scenario: str, model: Path, backend: Backend, env: Mapping[str, str] | None = None
    ) -> FlavourImage:
        """The image, built now if no test of the module built it yet (a failed build fails each user)."""
        key = (scenario, backend)
        if key not in self.built and key not in self.failed:
            try:
                self.built[key] = self._build(scenario, model, backend, env or {})
            except BuildFailed as exc:
                self.failed[key] = str(exc)
        if key in self.failed:
            pytest.fail(self.failed[key])
        return self.built[key]

    def _build(self, scenario: str, model: Path, backend: Backend, env: Mapping[str, str]) -> FlavourImage:
        tag = f"kiln-e2e/flavour-{scenario.replace('_', '-')}-{backend}:{SESSION}"
        source = ["--env-from", str(model)] if backend == "agnostic" else ["-m", str(model)]
        args = ["build", *source, "-n", tag]
        if backend == "oci":
            base = f"docker-archive:{self.base()}"
            args += ["--backend", "oci", "--output", "docker", "--base-image", base]
        else:
            args += ["--base-image", BASE_IMAGE]
        self.tags.append(tag)
        result = kiln(*args, env=env, timeout=1800)
        if result.returncode != 0:
            raise BuildFailed(
                f"kiln build {scenario} --backend {backend} failed ({result.returncode}):\n"
                f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
            )
        return FlavourImage(scenario, backend, tag, result.stdout + result.stderr)

    def base(self) -> Path:
        """``docker save`` of the test base, made once, for the OCI backend."""
        if self._base_archive is None:
            path = self.workdir / "base.tar"
            saved = self.builder.cli.run(["save", "--output", str(path), BASE_IMAGE], timeout=600)
            assert saved.returncode == 0, saved.stderr
            self._base_archive = path
        return self._base_archive

    def remove_all(self) -> None:
        for tag in self.tags:
            self.builder.cli.run(["image", "rm", "--force", tag], timeout=300)


@pytest.fixture(scope="module")
def flavour_images(
    docker_builder: DockerBuilder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlavourImages]:
    made = FlavourImages(docker_builder, tmp_path_factory.mktemp("flavour-images"))
    yield made
    made.remove_all()


def serving_example(model: Path) -> str:
    """The request MLflow wrote next to the model: ``serving_input_example.json``."""
    return (model / "serving_input_example.json").read_text(encoding="utf-8")


def mlflow_answer(model: Path, body: str) -> Any:
    """What MLflow's scoring server would answer ``body`` with: parsed, predicted and serialised by MLflow."""
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import _parse_json_data, predictions_to_json

    loaded = mlflow.pyfunc.load_model(str(model))
    parsed = _parse_json_data(body, loaded.metadata, loaded.metadata.get_input_schema())
    raw = loaded.predict(parsed.data, params=parsed.params)
    out = io.StringIO()
    predictions_to_json(raw, out)
    return json.loads(out.getvalue())


def assert_same_answer(actual: Any, expected: Any, where: str = "answer", rel: float = 1e-6) -> None:
    """Equal JSON, floats to ``rel`` (the image may run another BLAS build than this process)."""
    if isinstance(expected, float) or isinstance(actual, float):
        numbers = isinstance(actual, (int, float)) and isinstance(expected, (int, float))
        assert numbers, (where, actual, expected)
        assert math.isclose(actual, expected, rel_tol=rel, abs_tol=1e-9), (where, actual, expected)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), (where, actual, expected)
        for key in expected:
            assert_same_answer(actual[key], expected[key], f"{where}.{key}", rel)
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (where, actual, expected)
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_answer(a, e, f"{where}[{i}]", rel)
    else:
        assert actual == expected, (where, actual, expected)


def score(builder: DockerBuilder, image: FlavourImage, body: str, mount: Path | None = None) -> Any:
    """Run ``image`` (with ``mount`` at the model path), wait for /ping, POST ``body``; the JSON answer."""
    volume = ("--volume", f"{mount}:{contract.MODEL_DIR}:ro") if mount is not None else ()
    with container(builder.cli, image.tag, *volume) as running:
        running.wait_ready()
        answer = running.post(body)
        assert answer.status_code == 200, f"{answer.status_code} {answer.text}\n{running.logs()[-4000:]}"
        return answer.json()


def image_lock(builder: DockerBuilder, image: FlavourImage) -> list[str]:
    """The requirement lines (``name==version``) of the image's lock, as the image holds it."""
    shown = builder.cli.run(["run", "--rm", "--entrypoint", "cat", image.tag, LOCK], timeout=120)
    assert shown.returncode == 0, shown.stderr
    return [line.split()[0] for line in shown.stdout.splitlines() if line[:1].isalnum()]


def locked_names(lock: list[str]) -> set[str]:
    return {line.split("==")[0].lower() for line in lock}


def with_extra_index(url: str) -> dict[str, str]:
    """``PIP_EXTRA_INDEX_URL`` adding ``url`` to the host's extra indexes (it replaces pip.conf's)."""
    current = os.environ.get("PIP_EXTRA_INDEX_URL", "")
    if not current:
        shown = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.extra-index-url"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        current = shown.stdout.strip() if shown.returncode == 0 else ""
    return {"PIP_EXTRA_INDEX_URL": f"{current} {url}".strip()}


def install_sdist(sdist: Path, target: Path) -> Path:
    """``pip install --target`` of a pure sdist (built here with this venv's setuptools); the target."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(sdist)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return target
