"""The Python API: exported from ``kiln``, validated before any slow work, lazy for the runtime."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Callable
from importlib.metadata import version
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


def test_exported_members() -> None:
    # As httpx checks its own: __all__ is sorted, complete and every name in it resolves to a
    # public kiln object (classes and functions defined in kiln, the error tree, the version).
    assert kiln.__all__ == sorted(kiln.__all__)
    public = {
        name
        for name in dir(kiln)
        if not name.startswith("_") and not isinstance(getattr(kiln, name), types.ModuleType)
    }
    assert public - {"TYPE_CHECKING", "Any", "annotations"} == set(kiln.__all__) - {"__version__"}
    assert kiln.__version__ == version("kiln")
    for name in set(kiln.__all__) - {"__version__"}:
        assert getattr(kiln, name).__module__.startswith("kiln."), name
    errors = [getattr(kiln, name) for name in kiln.__all__ if name.endswith("Error")]
    assert all(issubclass(error, kiln.KilnError) for error in errors)


def test_the_options_are_one_table_for_the_api_and_the_cli() -> None:
    from kiln.api.options import option_fields
    from kiln.cli.build import build as build_command

    flags = {opt.name: opt for opt in build_command.params}
    for row in option_fields(kiln.BuildOptions):
        assert row.name in flags, row.name
        assert tuple(flags[row.name].opts) == row.cli.flags
        assert flags[row.name].help == row.cli.help
    assert set(flags) - {row.name for row in option_fields(kiln.BuildOptions)} == {"quiet"}


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


def test_the_batching_options_are_baked_into_the_images_environment_and_labels(
    model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    dockerfile = api.generate_dockerfile(
        model_dir("sklearn_iris"),
        output_directory=tmp_path / "context",
        base_image="kiln-test/python:3.11-slim",
        max_batch_size=32,
        max_batch_delay=5,
        progress=RecordingProgress(),
    ).read_text()
    assert "KILN_MAX_BATCH_SIZE=32" in dockerfile and "KILN_MAX_BATCH_DELAY=5.0" in dockerfile
    assert '"io.kiln.max-batch-size"="32"' in dockerfile and '"io.kiln.max-batch-delay"="5.0"' in dockerfile
    plain = api.generate_dockerfile(
        model_dir("sklearn_iris"),
        output_directory=tmp_path / "plain",
        base_image="kiln-test/python:3.11-slim",
        progress=RecordingProgress(),
    ).read_text()
    assert "MAX_BATCH" not in plain and "max-batch" not in plain  # the defaults bake nothing
