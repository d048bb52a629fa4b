"""Preflight in model-agnostic images: the mounted model's requirements are checked, never rebuilt."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kiln import contract
from kiln.errors import DependencyError
from kiln.runtime import preflight
from kiln.settings import RuntimeSettings

AGNOSTIC = {contract.ENV_MODEL_AGNOSTIC[0]: "true"}


def _needing(model_dir: Callable[[str], Path], tmp_path: Path, *requirements: str) -> Path:
    """A copy of sklearn_iris whose requirements.txt also names ``requirements``."""
    copy = tmp_path / "needy_model"
    shutil.copytree(model_dir("sklearn_iris"), copy)
    with (copy / "requirements.txt").open("a") as handle:
        handle.write("\n" + "\n".join(requirements) + "\n")
    return copy


def test_model_inclusive_images_skip_the_check(model_dir: Callable[[str], Path], tmp_path: Path) -> None:
    model = _needing(model_dir, tmp_path, "kiln-test-no-such-package==1.0")
    info = preflight.check_model(RuntimeSettings(model_dir=str(model)), environ={})
    assert info.loader_module == "mlflow.sklearn"


def test_satisfied_requirements_pass(model_dir: Callable[[str], Path]) -> None:
    # The fixture's requirements were inferred from this very environment.
    settings = RuntimeSettings(model_dir=str(model_dir("sklearn_iris")))
    assert preflight.check_model(settings, environ=dict(AGNOSTIC)).flavors == ("python_function", "sklearn")


def test_missing_and_mismatched_requirements_fail_fast(
    model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    model = _needing(model_dir, tmp_path, "kiln-test-no-such-package==1.0", "pytest==1.0.0")
    with pytest.raises(DependencyError) as caught:
        preflight.check_model(RuntimeSettings(model_dir=str(model)), environ=dict(AGNOSTIC))
    text = caught.value.format()
    assert "needs packages this image does not have" in text
    assert "kiln-test-no-such-package==1.0" in text and "not installed" in text
    assert "pytest==1.0.0" in text and "installed: " in text
    assert contract.ENV_INSTALL_MISSING[0] in text


@pytest.mark.slow
def test_opt_in_install_at_start_goes_under_the_runtime_dir(
    model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    # Needs the package index (PyPI is reachable here), as the docs say.
    model = _needing(model_dir, tmp_path, "tomli-w==1.0.0")
    runtime_dir = tmp_path / "rt"
    settings = RuntimeSettings(model_dir=str(model), install_missing=True, runtime_dir=str(runtime_dir))
    environ = dict(AGNOSTIC)
    try:
        preflight.check_model(settings, environ=environ)
    finally:
        if str(runtime_dir / "site-packages") in sys.path:
            sys.path.remove(str(runtime_dir / "site-packages"))
    site = runtime_dir / "site-packages"
    assert environ["PYTHONPATH"].split(":")[0] == str(site)
    assert list(site.glob("tomli_w-1.0.0.dist-info"))
    # A worker started with that environment imports it.
    run = subprocess.run(
        [sys.executable, "-c", "import tomli_w; print(tomli_w.dumps({'a': 1}))"],
        env={"PYTHONPATH": environ["PYTHONPATH"], "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.stdout.strip() == "a = 1", run.stderr
