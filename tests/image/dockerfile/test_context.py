"""write_context and copy_model: the files, permissions, refusals and secret hygiene of a build context."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from tests.image.conftest import MakeEnv, python_slim

from kiln.errors import BuildError, ModelError, UsageError
from kiln.image.base import plan_python
from kiln.image.dockerfile.context import copy_model, write_context
from kiln.image.secrets import check_no_secrets, scrub_lock, secret_values
from kiln.image.spec import ImageOptions, build_image_spec
from kiln.model.info import ModelInfo


def _write(make_env: MakeEnv, model: ModelInfo, dest: Path, env_manager: str = "virtualenv") -> Path:
    base = python_slim()
    env = make_env(env_manager)
    spec = build_image_spec(
        model, env, base, plan_python(env_manager, "3.11", base), ImageOptions(base_image=base.image)
    )
    return write_context(spec, env, dest, model_dir=model.path)


def test_context_layout(make_env: MakeEnv, model: ModelInfo, tmp_path: Path) -> None:
    dest = tmp_path / "ctx"
    dockerfile = _write(make_env, model, dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [
        ".dockerignore",
        "Dockerfile",
        "kiln/dist/kiln-0.1.0-py3-none-any.whl",
        "kiln/finish.py",
        "kiln/installer/pip-24.2-py3-none-any.whl",
        "kiln/requirements.lock",
        "kiln/stripped/manifest.json",
        "kiln/wheelhouse/numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "model/MLmodel",
        "model/model.pkl",
        "model/python_env.yaml",
        "model/requirements.txt",
    ]
    assert dockerfile == dest / "Dockerfile"
    lock = (dest / "kiln/requirements.lock").read_text()
    assert "kiln-golden-token" not in lock and "--index-url" not in lock
    assert "numpy==2.0.0" in lock


def test_rewriting_an_earlier_context_is_allowed(make_env: MakeEnv, model: ModelInfo, tmp_path: Path) -> None:
    dest = tmp_path / "ctx"
    _write(make_env, model, dest)
    _write(make_env, model, dest)
    assert (dest / "model" / "MLmodel").is_file()


def test_a_foreign_non_empty_directory_is_refused(
    make_env: MakeEnv, model: ModelInfo, tmp_path: Path
) -> None:
    dest = tmp_path / "ctx"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="is not empty and is not a kiln build context"):
        _write(make_env, model, dest)
    assert (dest / "notes.txt").read_text() == "mine"


def test_model_permissions_are_normalised(tmp_path: Path) -> None:
    source = tmp_path / "m"
    (source / "sub").mkdir(parents=True)
    (source / "MLmodel").write_text("x")
    (source / "MLmodel").chmod(0o600)
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o700)
    (source / "sub").chmod(0o700)
    copy_model(source, tmp_path / "out")
    mode = lambda p: stat.S_IMODE((tmp_path / "out" / p).stat().st_mode)  # noqa: E731
    assert (mode("MLmodel"), mode("run.sh"), mode("sub"), mode(".")) == (0o644, 0o755, 0o755, 0o755)


def test_symlink_inside_the_model_is_kept_relative(tmp_path: Path) -> None:
    source = tmp_path / "m"
    (source / "data").mkdir(parents=True)
    (source / "data" / "weights.bin").write_bytes(b"w")
    (source / "weights.bin").symlink_to(source / "data" / "weights.bin")  # absolute, but inside
    copy_model(source, tmp_path / "out")
    link = tmp_path / "out" / "weights.bin"
    assert link.is_symlink() and os.readlink(link) == "data/weights.bin"
    assert link.read_bytes() == b"w"


def test_symlink_leaving_the_model_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "m"
    source.mkdir()
    (tmp_path / "secret.txt").write_text("host file")
    (source / "leak").symlink_to("../secret.txt")
    with pytest.raises(ModelError, match=r"symlink .*leak -> \.\./secret\.txt that points outside"):
        copy_model(source, tmp_path / "out")


def test_special_files_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "m"
    source.mkdir()
    os.mkfifo(source / "pipe")
    with pytest.raises(ModelError, match="not a regular file, directory or symlink"):
        copy_model(source, tmp_path / "out")


def test_scrub_lock_drops_index_options_and_credentials() -> None:
    lock = (
        "--index-url https://u:tok@idx/simple\n--extra-index-url=https://u:tok@idx2/simple\n"
        "-f https://u:tok@links/\n--trusted-host idx\n# via https://u:tok@idx/x\nnumpy==1 \\\n"
        "    --hash=sha256:ab\n"
    )
    scrubbed = scrub_lock(lock)
    assert "tok" not in scrubbed
    assert scrubbed == "# via https://idx/x\nnumpy==1 \\\n    --hash=sha256:ab\n"


def test_secret_values_from_the_host_environment() -> None:
    environ = {
        "PIP_EXTRA_INDEX_URL": "https://user:kiln-test-secret-token@127.0.0.1:9/simple https://pypi.org/simple",
        "MY_API_TOKEN": "abcdefgh12345",
        "HOME": "/root",
    }
    assert secret_values(environ) == ["kiln-test-secret-token", "abcdefgh12345"]


def test_check_no_secrets_refuses_credentials() -> None:
    environ = {"MY_API_TOKEN": "abcdefgh12345"}
    with pytest.raises(
        BuildError, match=r"the lock contains a URL with credentials \(-f https://\*\*\*\*@h/x\)"
    ):
        check_no_secrets([("the lock", "numpy==1\n-f https://u:p@h/x\n")], "FROM x", environ)
    with pytest.raises(BuildError, match="the lock contains the value of a credential"):
        check_no_secrets([("the lock", "x abcdefgh12345 y")], "FROM x", environ)
    with pytest.raises(BuildError, match="the Dockerfile contains the value of a credential"):
        check_no_secrets([], "LABEL x=abcdefgh12345", environ)
    check_no_secrets([("the lock", "numpy==1")], "FROM x", environ)
