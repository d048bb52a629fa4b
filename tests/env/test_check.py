"""The model-agnostic runtime's check: which of a mounted model's requirements are not installed."""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import uv

from kiln.env.check import check_model_requirements, installed_versions, unsatisfied_requirements
from kiln.env.kiln_wheel import build_kiln_wheel
from kiln.env.requirements import parse_requirement_lines


def lines(*text: str, root: Path) -> list:  # type: ignore[type-arg]
    return list(parse_requirement_lines(text, origin="requirements.txt", root=root).requirements)


def test_reports_missing_and_mismatched(tmp_path: Path) -> None:
    installed = {"numpy": "2.1.0", "pandas": "2.2.3", "mlflow-skinny": "3.17.2"}
    problems = unsatisfied_requirements(
        lines("numpy==2.4.6", "pandas>=2", "scikit-learn==1.9.1", "mlflow==3.17.2", root=tmp_path), installed
    )
    assert [(p.requirement, p.installed) for p in problems] == [
        ("numpy==2.4.6", "2.1.0"),
        ("scikit-learn==1.9.1", None),
    ]
    assert str(problems[0]) == "numpy==2.4.6 (requirements.txt:1): installed: 2.1.0"
    assert str(problems[1]) == "scikit-learn==1.9.1 (requirements.txt:3): not installed"


def test_skinny_satisfies_mlflow_only_at_the_same_version(tmp_path: Path) -> None:
    reqs = lines("mlflow==3.17.2", root=tmp_path)
    assert unsatisfied_requirements(reqs, {"mlflow-skinny": "3.17.2"}) == []
    assert unsatisfied_requirements(reqs, {"mlflow": "3.17.2"}) == []
    (problem,) = unsatisfied_requirements(reqs, {"mlflow-skinny": "3.16.0"})
    assert problem.installed == "3.16.0"


def test_a_cpu_or_cuda_build_satisfies_the_other(tmp_path: Path) -> None:
    # A CPU image swaps xgboost for xgboost-cpu (kiln.env.accelerators); a mounted model saved
    # with xgboost==X must still start on it (the same module at the same version).
    reqs = lines("xgboost==3.0.5", "onnxruntime-gpu==1.20.0", root=tmp_path)
    assert unsatisfied_requirements(reqs, {"xgboost-cpu": "3.0.5", "onnxruntime": "1.20.0"}) == []
    (problem,) = unsatisfied_requirements(reqs, {"xgboost-cpu": "2.1.4", "onnxruntime": "1.20.0"})
    assert problem.requirement == "xgboost==3.0.5" and problem.installed == "2.1.4"


def test_markers_are_evaluated_here(tmp_path: Path) -> None:
    reqs = lines(
        'only-old==1.0; python_version < "3.0"', 'everywhere==1.0; python_version >= "3.0"', root=tmp_path
    )
    problems = unsatisfied_requirements(reqs, {})
    assert [p.requirement for p in problems] == ['everywhere==1.0; python_version >= "3.0"']


def test_include_lines_are_followed_not_checked(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("cloudpickle==3.1.1\n", encoding="utf-8")
    reqs = lines("-r requirements.txt", root=tmp_path)
    problems = unsatisfied_requirements(reqs, {"cloudpickle": "3.0.0"})
    assert [(p.requirement, p.origin) for p in problems] == [("cloudpickle==3.1.1", "requirements.txt:1")]


def test_real_model_against_this_environment(model_dir: Callable[[str], Path]) -> None:
    path = model_dir("sklearn_iris")
    # The test environment is the one the model was saved from: everything is there.
    assert check_model_requirements(path) == []
    versions = installed_versions()
    versions.pop("scikit-learn")
    versions["numpy"] = "1.0.0"
    problems = check_model_requirements(path, versions)
    assert {p.requirement.split("==")[0]: p.installed for p in problems} == {
        "numpy": "1.0.0",
        "scikit-learn": None,
    }


def test_imports_with_only_the_runtime_requirements() -> None:
    # Builder-only packages are made unimportable; the check must still import and run.
    script = textwrap.dedent(
        """
        import sys
        BLOCKED = {"uv", "pip", "rich", "click", "httpx", "jinja2", "mlflow"}
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("blocked for this test: " + name)
                return None
        sys.meta_path.insert(0, Block())
        from kiln.env.check import unsatisfied_requirements, installed_versions
        from kiln.env.requirements import parse_requirement_lines
        from pathlib import Path
        reqs = parse_requirement_lines(["packaging>=1", "no-such-dist==1"], origin="r", root=Path("."))
        print([p.requirement for p in unsatisfied_requirements(reqs.requirements)])
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['no-such-dist==1']"


def _python39() -> str | None:
    pyenv = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.9*/bin/python3.9")))
    candidates = [shutil.which("python3.9"), *pyenv]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "True":
            return candidate
    return None


@pytest.mark.slow
def test_runs_on_python_39_with_only_packaging_and_pyyaml(
    model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    python39 = _python39()
    if python39 is None:
        pytest.skip("no Python 3.9 interpreter on this machine")
    wheel, _ = build_kiln_wheel(tmp_path / "dist")
    venv = tmp_path / "venv"
    uv_bin = uv.find_uv_bin()
    subprocess.run([uv_bin, "venv", "--quiet", "--python", python39, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = [uv_bin, "pip", "install", "--quiet", "--python", python]
    subprocess.run([*install, "packaging", "pyyaml"], check=True)
    subprocess.run([*install, "--no-deps", str(wheel)], check=True)
    script = (
        "import sys; from kiln.env.check import check_model_requirements as c; print(len(c(sys.argv[1])))"
    )
    result = subprocess.run(
        [python, "-c", script, str(model_dir("sklearn_iris"))], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # Nothing of the model's environment is installed in that bare 3.9 venv.
    requirements = (model_dir("sklearn_iris") / "requirements.txt").read_text().split()
    assert int(result.stdout) == len(requirements)
