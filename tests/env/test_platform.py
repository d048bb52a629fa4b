"""TargetPlatform in uv's and pip's words."""

from __future__ import annotations

import pytest
from packaging.tags import parse_tag

from kiln.env import platform
from kiln.env.spec import TargetPlatform
from kiln.errors import UsageError


def test_amd64_bookworm() -> None:
    target = TargetPlatform("3.11", "linux/amd64", "2.36")
    assert platform.uv_python_platform(target) == "x86_64-manylinux_2_36"
    tags = platform.platform_tags(target)
    assert tags[0] == "manylinux_2_36_x86_64"
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert platform.target_key(target) == "cp311-manylinux_2_36_x86_64"


def test_arm64_has_no_pre_2014_aliases() -> None:
    target = TargetPlatform("3.12", "linux/arm64", "2.36")
    assert platform.uv_python_platform(target) == "aarch64-manylinux_2_36"
    tags = platform.platform_tags(target)
    assert tags[-1] == "manylinux2014_aarch64"
    assert all("x86_64" not in tag for tag in tags)


def test_glibc_between_uv_levels_rounds_down() -> None:
    assert platform.uv_python_platform(TargetPlatform("3.11", glibc="2.30")) == "x86_64-manylinux_2_28"
    assert platform.uv_python_platform(TargetPlatform("3.11", glibc="2.45")) == "x86_64-manylinux_2_40"


def test_tag_rank_prefers_the_native_abi_and_refuses_foreign_wheels() -> None:
    target = TargetPlatform("3.11")

    def rank(tag: str) -> int | None:
        return platform.tag_rank(target, parse_tag(tag))

    native = rank("cp311-cp311-manylinux_2_17_x86_64")
    pure = rank("py3-none-any")
    assert native is not None and pure is not None and native < pure
    assert rank("cp311-cp311-manylinux_2_39_x86_64") is None  # needs a newer glibc
    assert rank("cp312-cp312-manylinux_2_17_x86_64") is None
    assert rank("cp311-cp311-manylinux_2_17_aarch64") is None
    assert rank("cp311-cp311-musllinux_1_2_x86_64") is None


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (TargetPlatform("3.11.7"), "not major.minor"),
        (TargetPlatform("3.11", "windows/amd64"), "not supported"),
        (TargetPlatform("3.11", glibc="musl"), "not a glibc version"),
    ],
)
def test_invalid_targets(target: TargetPlatform, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        platform.validate(target)
