"""install_environment / install_kiln: the environment and kiln layers written on the host, then run
inside the real base image (docker run with the trees mounted) to prove they work there."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from tests.image.layers.venv_support import BASE_IMAGE, IrisEnv, RootDirectory, run_in_base, tree_listing

from kiln import contract
from kiln.env.lockfile import parse_lock
from kiln.errors import DependencyError
from kiln.image.layers.venv import install_environment, install_kiln

pytest_plugins = ["tests.image.layers.venv_fixtures"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]

SMALL = ("packaging", "markupsafe", "jinja2", "pyyaml", "charset-normalizer")
"""A few real packages of the iris lock (pure, binary, one with a console script) for quick trees."""


@dataclasses.dataclass(frozen=True)
class Trees:
    env: Path
    kiln: Path
    merged: Path
    """Both layers in one tree (hard links), as the image's /opt/kiln sees them."""


@pytest.fixture(scope="session")
def iris_trees(
    iris_env: IrisEnv, base_rootfs: RootDirectory, tmp_path_factory: pytest.TempPathFactory
) -> Trees:
    root = tmp_path_factory.mktemp("iris-trees")
    env_tree, kiln_tree, merged = root / "env", root / "kiln", root / "merged"
    install_environment(
        env_tree,
        spec=iris_env.spec,
        env=iris_env.env,
        base=base_rootfs,
        base_python_version=iris_env.base.python_version or "",
    )
    install_kiln(kiln_tree, spec=iris_env.spec, kiln_wheel=iris_env.env.kiln_wheel, base=base_rootfs)
    shutil.copytree(env_tree, merged, symlinks=True, copy_function=_link)
    shutil.copytree(kiln_tree, merged, symlinks=True, copy_function=_link, dirs_exist_ok=True)
    return Trees(env_tree, kiln_tree, merged)


def _link(source: str, target: str) -> None:
    Path(target).hardlink_to(source)


def small_lock(iris_env: IrisEnv, tmp_path: Path, names: tuple[str, ...] = SMALL, edit: str = "") -> Path:
    """The iris lock's blocks for ``names`` only (with their real hashes)."""
    assert iris_env.env.lock_file is not None
    kept, keep = [], False
    for line in iris_env.env.lock_file.read_text().splitlines():
        if line and not line[0].isspace():
            keep = line.split("==")[0] in names
        if keep:
            kept.append(line)
    text = "\n".join(kept) + "\n"
    if edit:
        old, new = edit.split("->")
        text = text.replace(old, new)
    path = tmp_path / "small.lock"
    path.write_text(text)
    return path


def small_env(iris_env: IrisEnv, tmp_path: Path, **changes: object) -> IrisEnv:
    env = dataclasses.replace(iris_env.env, lock_file=small_lock(iris_env, tmp_path))
    return dataclasses.replace(iris_env, env=dataclasses.replace(env, **changes) if changes else env)


def test_the_venv_is_what_python_m_venv_makes_in_the_base(
    iris_trees: Trees, iris_env: IrisEnv, tmp_path: Path
) -> None:
    real = tmp_path / "real"
    script = f"{iris_env.spec.build_python} -m venv --without-pip {contract.VENV_DIR}"
    script += f" && cp -a {contract.VENV_DIR} /out/real"
    made = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{tmp_path}:/out", BASE_IMAGE, "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    ours = tree_listing(iris_trees.env / contract.VENV_DIR.lstrip("/"))
    theirs = tree_listing(real)
    assert {path: ours[path] for path in theirs} == theirs  # every file, link and mode venv makes, same bytes
    # Besides venv's own files: packages, scripts, and wheels' data files under the prefix as pip
    # puts them (sympy's share/man/man1/isympy.1 when the lock holds torch).
    ours_only = ("lib/python3.11/site-packages/", "bin/", "share/")
    outside = sorted(p for p in ours if p not in theirs and not (p + "/").startswith(ours_only))
    assert not outside, f"the environment layer wrote outside site-packages, bin/ and share/: {outside[:20]}"
    assert (
        (iris_trees.env / contract.LOCK_PATH.lstrip("/"))
        .read_text()
        .startswith("# kiln lock for CPython 3.11")
    )


def test_the_environment_runs_the_model_in_the_base_image(iris_trees: Trees, iris_env: IrisEnv) -> None:
    script = (
        "import json, sklearn, mlflow.pyfunc, kiln.runtime, pandas as pd, uvloop\n"
        "assert uvloop.run(__import__('asyncio').sleep(0, result=7)) == 7\n"
        f"model = mlflow.pyfunc.load_model('{contract.MODEL_DIR}')\n"
        "columns = model.metadata.get_input_schema().input_names()\n"
        "rows = pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=columns)\n"
        "print(json.dumps({'prediction': model.predict(rows).tolist(), 'pyc': sklearn.__cached__,"
        " 'sklearn': sklearn.__file__}))\n"
    )
    done = run_in_base(
        [f"{contract.VENV_DIR}/bin/python", "-c", script],
        mounts=[(iris_trees.merged / "opt/kiln", contract.KILN_HOME), (iris_env.model, contract.MODEL_DIR)],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["prediction"] == [0]
    assert result["sklearn"].startswith(f"{contract.VENV_DIR}/lib/python3.11/site-packages/sklearn/")
    site = iris_trees.env / contract.VENV_DIR.lstrip("/") / "lib/python3.11/site-packages"
    assert (iris_trees.env / result["pyc"].lstrip("/")).is_file()  # bytecode compiled on the host is used
    assert not list(site.glob("*/tests")), "package tests are pruned like the Dockerfile does"
    assert (site / "sklearn").is_dir() and not (site / "kiln").exists()  # kiln is in its own layer
    # Only MLflow needs mlflow-skinny: bytecode for what the start imports, not for its tracking server.
    assert (site / "mlflow/pyfunc/__pycache__/__init__.cpython-311.pyc").is_file()
    assert (site / "mlflow/server/__init__.py").is_file()
    assert not (site / "mlflow/server/__pycache__").exists()
    # uvloop's event loop ships with DWARF sections; the layer holds the stripped copy.
    loop = next((site / "uvloop").glob("loop.cpython-311-*.so"))
    with open(loop, "rb") as handle:
        assert not [s.name for s in ELFFile(handle).iter_sections() if s.name.startswith(".debug_")]
    assert loop.stat().st_size < 5_000_000
    assert (iris_trees.kiln / site.relative_to(iris_trees.env) / "kiln" / "runtime").is_dir()


def test_console_scripts_run_with_the_venv_python(iris_trees: Trees) -> None:
    venv_bin = iris_trees.merged / contract.VENV_DIR.lstrip("/") / "bin"
    assert (venv_bin / "mlflow").read_text().startswith(f"#!{contract.VENV_DIR}/bin/python\n")
    assert (venv_bin / "mlflow").stat().st_mode & 0o777 == 0o755
    done = run_in_base(
        [f"{contract.VENV_DIR}/bin/mlflow", "--version"],
        mounts=[(iris_trees.merged / "opt/kiln", contract.KILN_HOME)],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3.17.2" in done.stdout


def test_same_inputs_give_the_same_tree_byte_for_byte(
    iris_env: IrisEnv, base_rootfs: RootDirectory, tmp_path: Path
) -> None:
    small = small_env(iris_env, tmp_path)
    trees = []
    for name in ("one", "two"):
        install_environment(
            tmp_path / name, spec=small.spec, env=small.env, base=base_rootfs, base_python_version="3.11.2"
        )
        trees.append(tree_listing(tmp_path / name))
    assert trees[0] == trees[1]
    assert any(path.endswith(".cpython-311.pyc") for path in trees[0])


def test_uv_gives_the_same_environment(iris_env: IrisEnv, base_rootfs: RootDirectory, tmp_path: Path) -> None:
    small = small_env(iris_env, tmp_path)
    uv_spec = dataclasses.replace(small.spec, env_manager="uv", installer="uv-wheel")
    install_environment(
        tmp_path / "pip", spec=small.spec, env=small.env, base=base_rootfs, base_python_version="3.11.2"
    )
    install_environment(
        tmp_path / "uv",
        spec=uv_spec,
        env=dataclasses.replace(small.env, env_manager="uv"),
        base=base_rootfs,
        base_python_version="3.11.2",
    )
    assert tree_listing(tmp_path / "pip") == tree_listing(tmp_path / "uv")


def test_local_installs_into_the_base_pythons_own_site_packages(
    iris_env: IrisEnv, base_rootfs: RootDirectory, tmp_path: Path
) -> None:
    small = small_env(iris_env, tmp_path)
    spec = dataclasses.replace(
        small.spec,
        env_manager="local",
        installer="pip-module",
        python=small.spec.build_python or "",
        site_packages="",
    )
    tree = tmp_path / "tree"
    install_environment(
        tree,
        spec=spec,
        env=dataclasses.replace(small.env, env_manager="local"),
        base=base_rootfs,
        base_python_version="3.11.2",
    )
    dist = "usr/local/lib/python3.11/dist-packages"  # Debian's python3: pip's default for /usr/local
    assert (tree / dist / "markupsafe").is_dir() and not (tree / "opt/kiln/venv").exists()
    assert (tree / "usr/local/bin/normalizer").read_text().startswith(f"#!{spec.build_python}\n")
    script = "python3 -c 'import markupsafe, yaml; print(markupsafe.__file__)' && normalizer --version"
    done = run_in_base(
        ["sh", "-c", script],
        mounts=[(tree / dist, f"/{dist}"), (tree / "usr/local/bin/normalizer", "/usr/local/bin/normalizer")],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"/{dist}/markupsafe/__init__.py")
    assert "Charset-Normalizer" in done.stdout, done.stdout


def test_a_wheel_that_does_not_match_the_lock_hash_is_refused(
    iris_env: IrisEnv, base_rootfs: RootDirectory, tmp_path: Path
) -> None:
    lock = small_lock(iris_env, tmp_path)
    entry = next(e for e in parse_lock(lock.read_text()) if e.name == "pyyaml")
    wrong = small_lock(iris_env, tmp_path, edit=f"{sorted(entry.hashes)[0]}->{'0' * 64}")
    for digest in sorted(entry.hashes)[1:]:
        wrong.write_text(wrong.read_text().replace(digest, "1" * 64))
    env = dataclasses.replace(iris_env.env, lock_file=wrong)
    with pytest.raises(DependencyError) as caught:
        install_environment(
            tmp_path / "tree", spec=iris_env.spec, env=env, base=base_rootfs, base_python_version="3.11.2"
        )
    assert "pyyaml==6.0.4" in caught.value.message and "matches no --hash" in caught.value.message
