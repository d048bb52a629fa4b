"""Finished conda solves, cached by their inputs, so a rebuild locks the same packages.

``<cache>/conda/locks/<sha256 of the inputs>.json`` holds the solved packages for: the
channels' bare URLs (and mirrors), the specs, the platform and its glibc. A channel that
publishes a new build later does not change the next build's lock; delete ``conda/locks/``
to solve again (e.g. for security updates), as for pip's ``locks/``. Credentials are never
part of the key or the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.env.cache import atomic_write
from kiln.env.conda.access import Channels

if TYPE_CHECKING:
    from kiln.env.conda.lock import CondaPackage

_FORMAT = 1


def solve_key(channels: Channels, specs: Sequence[str], subdir: str, glibc: str) -> str:
    """sha256 over everything that decides the solve."""
    inputs = {
        "format": _FORMAT,
        "channels": [[channel.url, list(channel.mirrors)] for channel in channels.channels],
        "specs": list(specs),
        "subdir": subdir,
        "glibc": glibc,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode("utf-8")).hexdigest()


def load_solve(cache_dir: Path, key: str) -> tuple[CondaPackage, ...] | None:
    """The cached packages of a solve, or None (also for a file an older kiln wrote)."""
    from kiln.env.conda.lock import CondaPackage

    path = _path(cache_dir, key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return tuple(CondaPackage(**entry) for entry in data["packages"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_solve(cache_dir: Path, key: str, packages: Sequence[CondaPackage]) -> None:
    data = {"packages": [dataclasses.asdict(package) for package in packages]}
    atomic_write(_path(cache_dir, key), (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def _path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "conda" / "locks" / f"{key}.json"
