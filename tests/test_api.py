"""The Python API: exported from ``kiln``, validated before any slow work, lazy for the runtime."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import kiln
from kiln import api
from kiln.errors import ModelError, UsageError
from tests.backends.recording import RecordingProgress


def test_build_and_generate_are_exported() -> None:
    assert kiln.build is api.build
    assert kiln.generate_dockerfile is api.generate_dockerfile
    assert kiln.BuildResult is api.BuildResult
    with pytest.raises(AttributeError):
        kiln.no_such_thing  # noqa: B018


def test_the_runtime_does_not_import_the_builder() -> None:
    # Inside images only the runtime's dependencies exist: importing kiln must not pull in
    # kiln.api (and with it uv, jinja2 templates, httpx, the env resolver).
    code = "import kiln, kiln.runtime, kiln.runtime.preflight, sys; print('kiln.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad Name"}, "image name 'Bad Name' is not a valid Docker reference"),
        ({"name": "ok", "env_manager": "pipenv"}, "unknown env manager 'pipenv'"),
        (
            {"name": "ok", "requirements": ["/nonexistent/req.txt"]},
            "requirements file '/nonexistent/req.txt'",
        ),
        ({"name": "ok", "env_from": "/tmp", "model_uri": "/tmp"}, "pass either -m MODEL or --env-from"),
        ({"name": "ok", "smoke_test": True}, "--smoke-test needs a model"),
    ],
)
def test_bad_options_fail_before_any_work(kwargs: dict[str, object], message: str) -> None:
    progress = RecordingProgress()
    with pytest.raises(UsageError, match=message):
        api.build(progress=progress, **kwargs)  # type: ignore[arg-type]
    assert progress.phases == [] and progress.finished == [False]


def test_a_model_that_is_not_pyfunc_is_a_model_error(model_dir: Callable[[str], Path]) -> None:
    with pytest.raises(ModelError, match="has no 'python_function' flavour"):
        api.build(model_dir("not_pyfunc"), name="ok", progress=RecordingProgress())
