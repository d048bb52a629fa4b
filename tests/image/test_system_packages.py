"""System packages: the user's --system-package, and Debian packages for libraries the wheels need."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tests.env.native.conftest import LIGHTGBM, NUMPY, SLIM_BASE_FILES, SLIM_BASE_PACKAGES, download_wheel

from kiln.env.spec import EnvSpec, TargetPlatform
from kiln.errors import BuildError, UsageError
from kiln.image.probe import BaseImageInfo
from kiln.image.system_packages import check_package_names, decide_system_packages

SLIM = BaseImageInfo(
    "python:3.11-slim",
    "sha256:slim",
    python="/usr/local/bin/python3",
    python_version="3.11.7",
    glibc="2.36",
    has_apt=True,
    codename="bookworm",
    libraries=SLIM_BASE_FILES,
    packages=SLIM_BASE_PACKAGES,
)


def env_with(wheelhouse: Path | None) -> EnvSpec:
    return EnvSpec(
        env_manager="virtualenv",
        target=TargetPlatform("3.11"),
        requirements=(),
        lock_file=None,
        lock_digest="sha256:0",
        wheelhouse=wheelhouse,
        kiln_wheel=Path("kiln.whl"),
    )


@pytest.fixture
def lightgbm_wheelhouse(tmp_path: Path) -> Path:
    house = tmp_path / "wheels"
    house.mkdir()
    for requirement in (LIGHTGBM, NUMPY):
        path = download_wheel(requirement)
        (house / path.name).symlink_to(path)
    return house


def test_names_are_checked_and_kept_once() -> None:
    assert check_package_names(["libgomp1", "curl", "libgomp1", "g++-12"]) == ("libgomp1", "curl", "g++-12")
    for bad in ("LibGomp", "curl; rm -rf /", "-o", "a"):
        with pytest.raises(UsageError, match="is not a Debian package name"):
            check_package_names([bad])


@pytest.mark.slow
def test_lightgbm_on_a_slim_base_gets_libgomp1(lightgbm_wheelhouse: Path) -> None:
    messages: list[str] = []
    chosen = decide_system_packages(["curl"], env_with(lightgbm_wheelhouse), SLIM, say=messages.append)
    assert chosen.packages == ("curl", "libgomp1")
    (note,) = chosen.notes
    assert (
        note
        == "added Debian packages for native libraries the wheels need: libgomp1 (libgomp.so.1 for lightgbm)"
    )
    # Asked for already: nothing added twice, nothing to say.
    assert decide_system_packages(["libgomp1"], env_with(lightgbm_wheelhouse), SLIM).packages == ("libgomp1",)


@pytest.mark.slow
def test_a_base_without_apt_is_refused_naming_the_library(lightgbm_wheelhouse: Path) -> None:
    with pytest.raises(
        BuildError, match=r"has no apt-get to add them: libgomp1 \(libgomp\.so\.1 for lightgbm\)"
    ):
        decide_system_packages([], env_with(lightgbm_wheelhouse), replace(SLIM, has_apt=False))


def test_what_cannot_be_checked_is_said(tmp_path: Path) -> None:
    uninspected = replace(SLIM, libraries=())
    chosen = decide_system_packages(["curl"], env_with(tmp_path), uninspected)
    assert chosen.packages == ("curl",)
    assert "were not checked" in chosen.notes[0]
    assert decide_system_packages([], env_with(None), SLIM).packages == ()  # conda: the channel's business
