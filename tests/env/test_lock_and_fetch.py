"""Real resolution against the real index and real downloads, for the image's platform."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from packaging.utils import parse_wheel_filename

from kiln.contract import RUNTIME_REQUIREMENTS
from kiln.env import platform
from kiln.env.cache import sha256_file
from kiln.env.lockfile import parse_lock
from kiln.env.mlflow_choice import host_mlflow_version
from kiln.env.resolve import resolve_env
from kiln.env.spec import EnvSpec, TargetPlatform
from kiln.errors import DependencyError
from kiln.model.info import read_model_info
from tests.env.conftest import pure_wheel

pytestmark = pytest.mark.slow

AMD64 = TargetPlatform("3.11", "linux/amd64", "2.36")
ARM64 = TargetPlatform("3.11", "linux/arm64", "2.36")


def resolve_iris(
    model_path: Path, work_dir: Path, messages: list[str] | None = None, **kwargs: object
) -> EnvSpec:
    return resolve_env(
        read_model_info(model_path),
        env_manager=kwargs.pop("env_manager", "virtualenv"),  # type: ignore[arg-type]
        target=kwargs.pop("target", AMD64),  # type: ignore[arg-type]
        work_dir=work_dir,
        progress=None if messages is None else messages.append,
        **kwargs,  # type: ignore[arg-type]
    )


def assert_wheelhouse_matches_lock(spec: EnvSpec) -> None:
    assert spec.lock_file is not None and spec.wheelhouse is not None
    entries = parse_lock(spec.lock_file.read_text())
    wheels = sorted(spec.wheelhouse.iterdir())
    assert len(wheels) == len(entries)
    by_name = {str(parse_wheel_filename(w.name)[0]): w for w in wheels}
    for entry in entries:
        wheel = by_name[entry.name]
        assert str(parse_wheel_filename(wheel.name)[1]) == entry.version
        assert sha256_file(wheel) in entry.hashes, wheel.name
        assert platform.tag_rank(spec.target, parse_wheel_filename(wheel.name)[3]) is not None, wheel.name


def test_sklearn_iris_locked_and_fetched_for_python_311_amd64(
    model_dir: Callable[[str], Path], tmp_path: Path, kiln_cache: Path
) -> None:
    messages: list[str] = []
    spec = resolve_iris(model_dir("sklearn_iris"), tmp_path, messages)
    assert spec.lock_file == tmp_path / "requirements.lock"
    lock = spec.lock_file.read_text()
    pins = {entry.name: entry for entry in parse_lock(lock)}
    assert pins["scikit-learn"].version == "1.9.1"
    assert pins["numpy"].version == "2.4.6"
    assert pins["pandas"].version == "3.1.1"
    assert pins["mlflow-skinny"].version == "3.17.2"
    assert "mlflow" not in pins
    assert all(entry.hashes for entry in pins.values())
    assert {"starlette", "uvicorn", "orjson", "httptools", "uvloop"} <= set(pins)
    assert "--index-url" not in lock and "://" not in lock
    assert spec.lock_digest.startswith("sha256:") and len(spec.lock_digest) == 71
    assert_wheelhouse_matches_lock(spec)
    for wheel in spec.wheelhouse.iterdir():  # type: ignore[union-attr]
        assert wheel.name.endswith(("-any.whl", "_x86_64.whl")), wheel.name
        assert "-cp311-" in wheel.name or "-abi3-" in wheel.name or "-none-" in wheel.name, wheel.name
    assert spec.requirements[0] == "mlflow-skinny==3.17.2"
    assert set(RUNTIME_REQUIREMENTS) <= set(spec.requirements)
    assert spec.notes[0].startswith("mlflow==3.17.2 -> mlflow-skinny==3.17.2")
    assert spec.installer_wheel is not None and spec.installer_wheel.name.startswith("pip-")
    assert spec.kiln_wheel.parent == tmp_path / "kiln"
    assert messages[1] == f"resolving {len(spec.requirements)} requirements for Python 3.11 linux/amd64"
    assert any(m.startswith(f"fetched {len(pins)} wheels (") for m in messages)


def test_second_resolve_downloads_nothing_and_gives_the_same_lock(
    model_dir: Callable[[str], Path], tmp_path: Path, kiln_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = resolve_iris(model_dir("sklearn_iris"), tmp_path / "first")
    assert first.lock_file is not None
    # A different model artifact with the same requirements: nothing is resolved again.
    changed = tmp_path / "changed-model"
    shutil.copytree(model_dir("sklearn_iris"), changed)
    (changed / "model.skops").write_bytes(b"retrained")
    # Any download or resolution now fails: every proxy is a closed port, uv is offline. (pip's
    # index settings stay as they were: they are part of what decides the lock.)
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    monkeypatch.setenv("UV_OFFLINE", "1")
    messages: list[str] = []
    second = resolve_iris(changed, tmp_path / "second", messages)
    assert second.lock_file is not None
    assert second.lock_file.read_bytes() == first.lock_file.read_bytes()
    assert second.lock_digest == first.lock_digest
    count = len(parse_lock(second.lock_file.read_text()))
    # uv's lock, before kiln.env.trim leaves out what serving never imports (the lock file's count).
    assert any(re.fullmatch(r"locked \d+ packages \(lock from cache\)", message) for message in messages)
    assert f"fetched {count} wheels ({count} from cache)" in messages
    assert sorted(p.name for p in second.wheelhouse.iterdir()) == sorted(  # type: ignore[union-attr]
        p.name
        for p in first.wheelhouse.iterdir()  # type: ignore[union-attr]
    )


@pytest.mark.parametrize(
    ("pin", "runtime"),
    [
        ("starlette==0.20.0", "starlette>=0.37"),
        ("orjson==3.0.0", "orjson>=3.9"),
        ("fastapi==0.100.0", "starlette>=0.37"),
    ],
)
def test_conflict_with_kilns_runtime_names_both_requirements(
    tmp_path: Path, kiln_cache: Path, pin: str, runtime: str
) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(f"{pin}\n", encoding="utf-8")
    with pytest.raises(DependencyError) as info:
        resolve_env(
            None, env_manager="virtualenv", target=AMD64, work_dir=tmp_path / "ctx", requirements_files=[reqs]
        )
    message = info.value.message
    assert f"requirement '{pin}' conflicts with kiln's runtime requirement '{runtime}'" in message
    assert "Python 3.11 linux/amd64" in message
    assert info.value.hint and "uv says: Because" in info.value.hint
    assert not (tmp_path / "ctx" / "requirements.lock").exists()


def test_requirement_needing_a_newer_python_is_reported(tmp_path: Path, kiln_cache: Path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("numpy==2.4.6\n", encoding="utf-8")
    with pytest.raises(DependencyError) as info:
        resolve_env(
            None,
            env_manager="virtualenv",
            target=TargetPlatform("3.10"),
            work_dir=tmp_path / "ctx",
            requirements_files=[reqs],
        )
    assert "'numpy==2.4.6'" in info.value.message and "Python 3.10" in info.value.message
    assert info.value.hint and "Python>=3.11" in info.value.hint


def test_sdist_only_pure_package_is_built_on_the_host(tmp_path: Path, kiln_cache: Path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("docopt==0.6.2\n", encoding="utf-8")  # published only as an sdist
    spec = resolve_env(
        None, env_manager="local", target=AMD64, work_dir=tmp_path / "ctx", requirements_files=[reqs]
    )
    assert spec.installer_wheel is None
    assert (spec.wheelhouse / "docopt-0.6.2-py2.py3-none-any.whl").is_file()  # type: ignore[operator]
    assert_wheelhouse_matches_lock(spec)
    (docopt,) = [e for e in parse_lock(spec.lock_file.read_text()) if e.name == "docopt"]  # type: ignore[union-attr]
    assert len(docopt.hashes) == 2  # the sdist's, from the index, and the wheel built here
    assert any("docopt" in note and "sdist" in note for note in spec.notes)
    again = resolve_env(
        None, env_manager="local", target=AMD64, work_dir=tmp_path / "again", requirements_files=[reqs]
    )
    assert again.lock_file.read_bytes() == spec.lock_file.read_bytes()  # type: ignore[union-attr]


def test_model_agnostic_default_for_arm64(tmp_path: Path, kiln_cache: Path) -> None:
    spec = resolve_env(None, env_manager="uv", target=ARM64, work_dir=tmp_path)
    version = host_mlflow_version()
    assert spec.requirements[:3] == (f"mlflow-skinny=={version}", "numpy", "pandas")
    assert_wheelhouse_matches_lock(spec)
    wheels = [w.name for w in spec.wheelhouse.iterdir()]  # type: ignore[union-attr]
    assert any(name.startswith("numpy-") and name.endswith("_aarch64.whl") for name in wheels)
    assert all(name.endswith(("-any.whl", "_aarch64.whl")) for name in wheels), wheels
    assert spec.installer_wheel is not None
    assert spec.installer_wheel.name.startswith("uv-") and spec.installer_wheel.name.endswith("_aarch64.whl")


def test_installer_follows_the_models_pip_pin(
    model_dir: Callable[[str], Path], tmp_path: Path, kiln_cache: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(model_dir("sklearn_iris"), model)
    python_env = yaml.safe_load((model / "python_env.yaml").read_text())
    python_env["build_dependencies"] = ["pip==24.0", "setuptools", "wheel"]
    (model / "python_env.yaml").write_text(yaml.safe_dump(python_env))
    spec = resolve_iris(model, tmp_path / "ctx")
    assert spec.installer_wheel is not None and spec.installer_wheel.name == "pip-24.0-py3-none-any.whl"
    local = resolve_iris(model, tmp_path / "local", env_manager="local")
    assert local.installer_wheel is None and local.lock_digest == spec.lock_digest


def test_mlflow_home_is_built_and_pinned_by_hash(tmp_path: Path, kiln_cache: Path) -> None:
    # A stand-in for an MLflow checkout: a real project named mlflow, built by pip on the host.
    home = tmp_path / "mlflow-checkout"
    (home / "mlflow").mkdir(parents=True)
    (home / "mlflow" / "__init__.py").write_text('__version__ = "3.99.0.dev0"\n')
    (home / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "mlflow"\nversion = "3.99.0.dev0"\ndependencies = ["packaging"]\n'
        '[tool.setuptools]\npackages = ["mlflow"]\n'
    )
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("mlflow==3.17.2\n", encoding="utf-8")
    spec = resolve_env(
        None,
        env_manager="virtualenv",
        target=AMD64,
        work_dir=tmp_path / "ctx",
        requirements_files=[reqs],
        mlflow_home=home,
    )
    assert "mlflow==3.99.0.dev0" in spec.requirements and "mlflow==3.17.2" not in spec.requirements
    wheel = spec.wheelhouse / "mlflow-3.99.0.dev0-py3-none-any.whl"  # type: ignore[operator]
    assert wheel.is_file()
    (entry,) = [e for e in parse_lock(spec.lock_file.read_text()) if e.name == "mlflow"]  # type: ignore[union-attr]
    assert entry.hashes == {sha256_file(wheel)}
    assert_wheelhouse_matches_lock(spec)
    assert any("--mlflow-home" in note for note in spec.notes)


def test_old_mlflow_without_a_skinny_release_keeps_the_full_package(tmp_path: Path, kiln_cache: Path) -> None:
    # mlflow-skinny starts at 1.14.0: a model pinning mlflow==1.13.1 keeps the full package.
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("mlflow==1.13.1\n", encoding="utf-8")
    messages: list[str] = []
    spec = resolve_env(
        None,
        env_manager="local",
        target=AMD64,
        work_dir=tmp_path / "ctx",
        requirements_files=[reqs],
        progress=messages.append,
    )
    assert spec.requirements[0] == "mlflow==1.13.1"
    assert "mlflow-skinny==1.13.1 is not on the index: keeping mlflow==1.13.1" in spec.notes
    names = {entry.name: entry.version for entry in parse_lock(spec.lock_file.read_text())}  # type: ignore[union-attr]
    assert names["mlflow"] == "1.13.1" and "mlflow-skinny" not in names
    assert_wheelhouse_matches_lock(spec)


def test_wheel_shipped_inside_the_model_is_locked_by_hash(tmp_path: Path, kiln_cache: Path) -> None:
    # mlflow.models.add_libraries_to_model writes wheels/<file>.whl lines like this one.
    project = tmp_path / "project"
    (project / "wheels").mkdir(parents=True)
    name, data = pure_wheel("my-lib", "1.0.0", {"my_lib/__init__.py": "ANSWER = 42\n"})
    (project / "wheels" / name).write_bytes(data)
    reqs = project / "requirements.txt"
    reqs.write_text(f"wheels/{name}\nmlflow-skinny=={host_mlflow_version()}\n", encoding="utf-8")
    spec = resolve_env(
        None, env_manager="local", target=AMD64, work_dir=tmp_path / "ctx", requirements_files=[reqs]
    )
    assert spec.requirements[0] == "my-lib==1.0.0"
    (entry,) = [e for e in parse_lock(spec.lock_file.read_text()) if e.name == "my-lib"]  # type: ignore[union-attr]
    assert entry.hashes == {hashlib.sha256(data).hexdigest()}
    assert (spec.wheelhouse / name).read_bytes() == data  # type: ignore[operator]
    assert_wheelhouse_matches_lock(spec)
