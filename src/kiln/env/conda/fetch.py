"""Fetch the packages of a conda lock on the host, through kiln's cache, each checked by its sha256.

The cache holds ``conda/pkgs/<sha256>/<file name>``: a file is stored only after its bytes
matched the lock, so a cached file is trusted by its directory name. Downloads go through
rattler's client with the host's .condarc (mirrors, proxy, TLS, credentials); a package whose
bytes do not match its locked sha256 is refused and nothing is stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.env.cache import cache_root, place, sha256_file
from kiln.env.conda.access import import_rattler, rattler_client, resolve_channels
from kiln.env.conda.condarc import CondaConfig, read_condarc
from kiln.env.conda.errors import redact_channel_text
from kiln.env.conda.lock import CondaLock, CondaPackage
from kiln.errors import DependencyError

logger = logging.getLogger(__name__)

_PARALLEL = 6


@dataclass(frozen=True)
class FetchedPackages:
    """The lock's package files, one per package, in one directory."""

    directory: Path
    files: tuple[Path, ...]
    """In the lock's order."""
    from_cache: int


def fetch_conda_packages(
    lock: CondaLock,
    dest: Path,
    *,
    channels: Sequence[str] = (),
    config: CondaConfig | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> FetchedPackages:
    """Fill ``dest`` (emptied first) with the lock's package files; download what the cache lacks.

    ``channels`` are the environment's channels as written (they may carry the credentials
    that open them); ``config`` the host's .condarc (read when None)."""
    say = progress or (lambda message: logger.debug("%s", message))
    store = (cache_dir or cache_root()) / "conda" / "pkgs"
    missing = [package for package in lock.packages if not _stored(store, package).is_file()]
    if missing:
        config = config if config is not None else read_condarc()
        say(f"downloading {len(missing)} conda packages")
        asyncio.run(_download_all(missing, store, channels, config))
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    files = []
    for package in lock.packages:
        place(_stored(store, package), dest / package.filename)
        files.append(dest / package.filename)
    say(f"fetched {len(files)} conda packages ({len(files) - len(missing)} from cache)")
    return FetchedPackages(dest, tuple(files), len(files) - len(missing))


def verify_package(path: Path, package: CondaPackage) -> None:
    """DependencyError unless ``path`` has the sha256 the lock names for ``package``."""
    actual = sha256_file(path)
    if actual != package.sha256:
        raise DependencyError(
            f"conda package {package.filename} from {redact_channel_text(package.url)} has sha256 "
            f"{actual}, but the lock says {package.sha256}; kiln refuses it",
            hint="the file changed on the channel (or on the way) since the environment was solved: "
            "if the channel is trusted, delete kiln's lock cache to solve again",
        )


def _stored(store: Path, package: CondaPackage) -> Path:
    return store / package.sha256 / package.filename


async def _download_all(
    packages: Sequence[CondaPackage], store: Path, channels: Sequence[str], config: CondaConfig
) -> None:
    # The lock's bare URLs are complete; credentials come from the channels as the user wrote them.
    locked = sorted({package.channel for package in packages if package.channel})
    access = resolve_channels([*channels, *locked], config)
    with rattler_client(access, config) as (client, _rattler_config):
        limit = asyncio.Semaphore(_PARALLEL)

        async def one(package: CondaPackage) -> None:
            async with limit:
                await _download(client, package, store)

        await asyncio.gather(*(one(package) for package in packages))


async def _download(client: Any, package: CondaPackage, store: Path) -> None:
    import_rattler()
    from rattler.package_streaming import download_to_path

    directory = _stored(store, package).parent
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{package.filename}.", suffix=".part")
    os.close(handle)
    try:
        try:
            await download_to_path(client, package.url, Path(temporary))
        except Exception as exc:
            raise DependencyError(
                f"cannot download conda package {package.filename} from "
                f"{redact_channel_text(package.url)}: {redact_channel_text(str(exc))[:300]}",
                hint="check the channel and the host's .condarc (mirrors, proxy_servers, ssl_verify)",
            ) from exc
        verify_package(Path(temporary), package)
        os.replace(temporary, _stored(store, package))
    finally:
        Path(temporary).unlink(missing_ok=True)
