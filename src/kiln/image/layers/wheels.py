"""The wheels a lock installs, picked from the wheelhouse and checked like ``pip install --require-hashes``.

The Docker backend's pip refuses anything that is not a wheel for the image
(``--only-binary :all:``) or whose bytes match no ``--hash`` of the lock; so does
this. The daemonless backend cannot run a build inside the image, so a package
that reached the wheelhouse only as a source distribution, or as a wheel for
another platform, is an error naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)

from kiln.env import platform
from kiln.env.cache import sha256_file
from kiln.env.lockfile import LockEntry, parse_lock
from kiln.env.spec import TargetPlatform
from kiln.errors import BuildError, DependencyError

DOCKER_HINT = "build this image with --backend docker, which can run the package's build inside the image"


@dataclass(frozen=True)
class LockedWheel:
    """One lock entry and the wheel file that installs it."""

    entry: LockEntry
    path: Path
    sha256: str


@dataclass(frozen=True)
class _File:
    path: Path
    name: str
    version: str
    wheel: bool


def locked_wheels(lock_text: str, wheelhouse: Path, target: TargetPlatform) -> tuple[LockedWheel, ...]:
    """One verified wheel per entry of the lock, in the lock's order.

    BuildError names a package whose only file is an sdist or whose wheels do not run on
    ``target``; DependencyError names a wheel whose sha256 is not among the entry's hashes.
    """
    files = _index(wheelhouse)
    entries = parse_lock(lock_text)
    return tuple(_pick(entry, files.get(entry.name, []), target, wheelhouse) for entry in entries)


def _pick(entry: LockEntry, files: Sequence[_File], target: TargetPlatform, wheelhouse: Path) -> LockedWheel:
    version = canonicalize_version(entry.version)
    mine = [f for f in files if canonicalize_version(f.version) == version]
    wheels = [f for f in mine if f.wheel]
    where = f"CPython {target.python_version} on {platform.uv_python_platform(target)}"
    if not wheels:
        sdists = [f.path.name for f in mine if not f.wheel]
        if sdists:
            raise BuildError(
                f"package {entry.pin} has only a source distribution ({', '.join(sdists)}), which "
                f"--backend oci cannot build for {where} without running the image",
                hint=DOCKER_HINT,
            )
        raise BuildError(
            f"package {entry.pin} from the lock has no file in the wheelhouse {str(wheelhouse)!r}",
            hint="resolve the environment again (kiln writes one wheel per lock entry)",
        )
    ranked = sorted(
        (rank, f.path.name, f)
        for f in wheels
        if (rank := platform.tag_rank(target, parse_wheel_filename(f.path.name)[3])) is not None
    )
    if not ranked:
        names = ", ".join(f.path.name for f in wheels)
        raise BuildError(
            f"package {entry.pin} has no wheel that runs on {where} (found {names})",
            hint=DOCKER_HINT,
        )
    checked = [(f, sha256_file(f.path)) for _rank, _name, f in ranked]
    for f, digest in checked:
        if digest in entry.hashes:
            return LockedWheel(entry, f.path, digest)
    f, digest = checked[0]
    raise DependencyError(
        f"wheel {f.path.name} for {entry.pin} has sha256 {digest}, which matches no --hash of the lock "
        f"(expected one of {', '.join(sorted(entry.hashes))})",
        hint="the wheelhouse changed after locking; resolve the environment again",
    )


def _index(wheelhouse: Path) -> dict[str, list[_File]]:
    """Wheels and sdists in ``wheelhouse`` by canonical project name."""
    found: dict[str, list[_File]] = {}
    for path in sorted(wheelhouse.iterdir()) if wheelhouse.is_dir() else ():
        parsed = _parse(path.name)
        if parsed is not None:
            name, version, wheel = parsed
            found.setdefault(name, []).append(_File(path, name, version, wheel))
    return found


def _parse(filename: str) -> tuple[str, str, bool] | None:
    if filename.endswith(".whl"):
        try:
            name, version, _build, _tags = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            return None
        return canonicalize_name(name), str(version), True
    try:
        name, version = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return None
    return canonicalize_name(name), str(version), False
