"""Fetching a conda lock through kiln's cache with sha256 checks, and installing it offline for the
image's prefix: the installed CPython runs, native packages find their libraries, same bytes twice."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from kiln.contract import CONDA_ENV_DIR
from kiln.env.conda import (
    LOCK_FILE,
    CondaConfig,
    CondaLock,
    fetch_conda_packages,
    install_conda_environment,
    lock_conda_environment,
    parse_conda_environment,
)
from kiln.env.spec import TargetPlatform
from kiln.errors import DependencyError
from tests.conda_channel.serve import ChannelServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SPECS = ("python=3.11", "kiln-probe", "scikit-learn", "pip")


@pytest.fixture(scope="module")
def locked(conda_channel: ChannelServer, tmp_path_factory: pytest.TempPathFactory) -> CondaLock:
    env = parse_conda_environment({"channels": [conda_channel.url], "dependencies": list(SPECS)}, origin="t")
    cache = tmp_path_factory.mktemp("lock-cache")
    return lock_conda_environment(env, target=TargetPlatform("3.11"), config=CondaConfig(), cache_dir=cache)


@pytest.fixture(scope="module")
def packages(
    locked: CondaLock, conda_channel: ChannelServer, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    cache = tmp_path_factory.mktemp("kiln-cache")
    dest = tmp_path_factory.mktemp("packages")
    return fetch_conda_packages(locked, dest, config=CondaConfig(), cache_dir=cache).directory


@pytest.fixture(scope="module")
def image_env(locked: CondaLock, packages: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The environment as the image will hold it: built elsewhere, for /opt/kiln/conda-env."""
    return install_conda_environment(locked, packages, tmp_path_factory.mktemp("build") / "conda-env")


def test_fetch_checks_every_package_and_the_second_fetch_comes_from_the_cache(
    locked: CondaLock, conda_channel: ChannelServer, tmp_path: Path
) -> None:
    first = fetch_conda_packages(locked, tmp_path / "a", config=CondaConfig(), cache_dir=tmp_path / "cache")
    assert first.from_cache == 0
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == sorted(
        p.filename for p in locked.packages
    )
    for path, package in zip(first.files, locked.packages):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == package.sha256
    conda_channel.requests.clear()
    again = fetch_conda_packages(locked, tmp_path / "b", config=CondaConfig(), cache_dir=tmp_path / "cache")
    assert again.from_cache == len(locked.packages)
    assert conda_channel.requests == []


def test_a_package_whose_bytes_changed_is_refused_and_not_cached(
    locked: CondaLock, conda_channel: ChannelServer, tmp_path: Path
) -> None:
    probe = locked.package("kiln-probe")
    assert probe is not None
    conda_channel.tampered.add(probe.filename)
    try:
        with pytest.raises(DependencyError) as caught:
            fetch_conda_packages(
                locked, tmp_path / "pkgs", config=CondaConfig(), cache_dir=tmp_path / "cache"
            )
    finally:
        conda_channel.tampered.clear()
    assert f"conda package {probe.filename} from {probe.url} has sha256 " in caught.value.message
    assert f"but the lock says {probe.sha256}; kiln refuses it" in caught.value.message
    assert not list((tmp_path / "cache" / "conda" / "pkgs" / probe.sha256).glob("*.tar.bz2"))


def test_the_installed_python_runs_and_the_native_package_has_the_image_prefix_compiled_in(
    image_env: Path,
) -> None:
    script = (
        "import json, sys, ssl, ctypes, sqlite3, lzma, bz2, zlib, kilnprobe\n"
        "print(json.dumps({'prefix': sys.prefix, 'version': sys.version_info[:2], **kilnprobe.report()}))"
    )
    result = run_python(image_env, script)
    assert json.loads(result) == {
        "prefix": str(image_env),  # CPython finds itself wherever it is
        "version": [3, 11],
        "text": CONDA_ENV_DIR,  # the text placeholder, replaced for the image
        "binary": f"{CONDA_ENV_DIR}/share/kilnprobe",  # the binary one, in libkilnprobe.so
    }
    assert (image_env / "bin" / "pip").read_text().splitlines()[0] == f"#!{CONDA_ENV_DIR}/bin/python3.11"
    sysconfig = run_python(image_env, "import sysconfig; print(sysconfig.get_config_var('prefix'))")
    assert sysconfig.strip() == CONDA_ENV_DIR


def test_scikit_learn_from_the_channel_fits_and_predicts(image_env: Path) -> None:
    script = (
        "from sklearn.linear_model import LogisticRegression\n"
        "m = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])\n"
        "print(m.predict([[0.2], [2.8]]).tolist())"
    )
    assert run_python(image_env, script).strip() == "[0, 1]"


def test_installed_at_its_real_prefix_the_native_package_finds_its_data(
    conda_channel: ChannelServer, tmp_path: Path
) -> None:
    small = lock_small(conda_channel.url, tmp_path)
    packages = fetch_conda_packages(
        small, tmp_path / "pkgs", config=CondaConfig(), cache_dir=tmp_path
    ).directory
    target = tmp_path / "env"
    install_conda_environment(small, packages, target, prefix=str(target))
    assert (
        run_python(target, "import kilnprobe; print(kilnprobe.message())").strip() == "hello from kiln-probe"
    )


def test_a_private_channel_is_fetched_with_the_credentials_of_the_channels_as_written(
    conda_channel: ChannelServer, tmp_path: Path
) -> None:
    private = lock_small(conda_channel.basic_auth_url, tmp_path)
    fetched = fetch_conda_packages(
        private, tmp_path / "pkgs", channels=[conda_channel.basic_auth_url], config=CondaConfig(),
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert len(fetched.files) == len(private.packages)
    with pytest.raises(DependencyError) as caught:  # without them: the server's 401, no secret shown
        fetch_conda_packages(private, tmp_path / "b", config=CondaConfig(), cache_dir=tmp_path / "empty")
    assert "cannot download conda package" in caught.value.message and "401" in caught.value.message
    assert conda_channel.password not in caught.value.format()


def test_the_environment_holds_its_lock_and_nothing_of_the_host(
    locked: CondaLock, image_env: Path, packages: Path
) -> None:
    assert (image_env / LOCK_FILE).read_text() == locked.explicit()
    assert not (image_env / "CACHEDIR.TAG").exists()
    for record in (image_env / "conda-meta").glob("*.json"):
        text = record.read_text()
        assert str(packages) not in text and "file://" not in text and "/tmp/" not in text
        assert json.loads(text)["url"].startswith("http://127.0.0.1:")


def test_the_same_lock_installs_the_same_bytes(
    locked: CondaLock, packages: Path, image_env: Path, tmp_path: Path
) -> None:
    again = install_conda_environment(locked, packages, tmp_path / "conda-env")
    assert tree(again) == tree(image_env)


def lock_small(channel: str, cache: Path) -> CondaLock:
    env = parse_conda_environment(
        {"channels": [channel], "dependencies": ["python", "kiln-probe"]}, origin="t"
    )
    return lock_conda_environment(env, target=TargetPlatform("3.11"), config=CondaConfig(), cache_dir=cache)


def run_python(prefix: Path, script: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(prefix), "LC_ALL": "C.UTF-8"}
    result = subprocess.run(
        [str(prefix / "bin" / "python"), "-I", "-c", script], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root``: its mode and its content's (or link target's) sha256."""
    entries: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if "__pycache__" in relative:
            continue
        mode = oct(os.lstat(path).st_mode)
        if path.is_symlink():
            entries[relative] = f"{mode} -> {os.readlink(path)}"
        elif path.is_file():
            entries[relative] = f"{mode} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        else:
            entries[relative] = mode
    return entries


def test_the_standard_library_comes_compiled_so_a_read_only_start_compiles_nothing(image_env: Path) -> None:
    stdlib = image_env / "lib" / "python3.11"
    before = sorted(stdlib.rglob("*.pyc"))
    assert stdlib / "__pycache__" / "os.cpython-311.pyc" in before
    run_python(image_env, "import json, email.parser, asyncio, http.server, logging.handlers")
    assert sorted(stdlib.rglob("*.pyc")) == before
