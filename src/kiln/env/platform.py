"""A TargetPlatform in the words each tool understands: uv's platform, pip's tags, wheel tags."""

from __future__ import annotations

import re
from functools import lru_cache

from packaging import tags

from kiln.env.spec import TargetPlatform
from kiln.errors import UsageError

_ARCHES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm64/v8": "aarch64"}
# The manylinux levels uv's --python-platform knows, newest last.
_UV_MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
# PEP 600 aliases of the older manylinux names, by glibc minor version.
_LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
_FIRST_GLIBC = {"x86_64": 5, "aarch64": 17}


def validate(target: TargetPlatform) -> None:
    """Raise UsageError unless ``target`` names a Python, a Linux platform and a glibc kiln knows."""
    if not re.fullmatch(r"3\.\d{1,2}", target.python_version):
        raise UsageError(
            f"target Python version {target.python_version!r} is not major.minor (expected e.g. '3.11')"
        )
    if target.os_arch not in _ARCHES:
        raise UsageError(
            f"target platform {target.os_arch!r} is not supported (expected one of {', '.join(_ARCHES)})"
        )
    if not re.fullmatch(r"2\.\d{1,2}", target.glibc):
        raise UsageError(f"target glibc {target.glibc!r} is not a glibc version (expected e.g. '2.36')")


def arch(target: TargetPlatform) -> str:
    """``x86_64`` or ``aarch64``."""
    return _ARCHES[target.os_arch]


def glibc_minor(target: TargetPlatform) -> int:
    return int(target.glibc.split(".")[1])


def uv_python_platform(target: TargetPlatform) -> str:
    """``x86_64-manylinux_2_36``: the newest level uv knows that the base image's glibc runs."""
    minor = glibc_minor(target)
    usable = [level for level in _UV_MANYLINUX if level <= minor]
    if not usable:
        raise UsageError(
            f"target glibc {target.glibc} is older than 2.17, the oldest manylinux level kiln can resolve for"
        )
    return f"{arch(target)}-manylinux_2_{usable[-1]}"


def platform_tags(target: TargetPlatform) -> tuple[str, ...]:
    """Every platform tag a wheel may carry to run on the target, most specific first (for pip)."""
    machine = arch(target)
    result: list[str] = []
    for minor in range(glibc_minor(target), _FIRST_GLIBC[machine] - 1, -1):
        result.append(f"manylinux_2_{minor}_{machine}")
        legacy = _LEGACY.get(minor)
        if legacy and (machine == "x86_64" or legacy == "manylinux2014"):
            result.append(f"{legacy}_{machine}")
    return tuple(result)


def interpreter(target: TargetPlatform) -> str:
    """``cp311``."""
    return "cp" + target.python_version.replace(".", "")


def target_key(target: TargetPlatform) -> str:
    """``cp311-manylinux_2_36_x86_64``: names the wheel cache for one target."""
    return f"{interpreter(target)}-manylinux_{target.glibc.replace('.', '_')}_{arch(target)}"


@lru_cache(maxsize=16)
def supported_tags(target: TargetPlatform) -> tuple[tags.Tag, ...]:
    """Wheel tags CPython on the target accepts, most preferred first (as pip ranks them)."""
    version = tuple(int(part) for part in target.python_version.split("."))
    platforms = list(platform_tags(target))
    return (
        *tags.cpython_tags(version, platforms=platforms),
        *tags.compatible_tags(version, interpreter(target), platforms=platforms),
    )


@lru_cache(maxsize=16)
def _ranks(target: TargetPlatform) -> dict[tags.Tag, int]:
    ranks: dict[tags.Tag, int] = {}
    for index, tag in enumerate(supported_tags(target)):
        ranks.setdefault(tag, index)
    return ranks


def tag_rank(target: TargetPlatform, wheel_tags: frozenset[tags.Tag]) -> int | None:
    """Position of the wheel's best tag among the target's (lower is better); None if it cannot run."""
    ranks = _ranks(target)
    found = [ranks[tag] for tag in wheel_tags if tag in ranks]
    return min(found) if found else None
