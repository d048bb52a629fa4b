"""Install a locked conda environment offline into a directory, for the prefix it will live at.

rattler links the fetched package files (``file://`` URLs: no network) into ``target_dir``
and, with ``alternative_target_prefix``, writes ``prefix`` (the image's
``/opt/kiln/conda-env``) into every text and binary placeholder instead of ``target_dir``:
the directory becomes the image's environment as it is, wherever it was built. Files are
copied, never linked into a cache, and no package script runs. Afterwards the
``conda-meta/*.json`` records are rewritten to say what the image needs and nothing of
the host: the locked URL and channel instead of the ``file://`` path, no cache paths.
The same lock and packages give the same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiln.contract import CONDA_ENV_DIR
from kiln.env.cache import cache_root
from kiln.env.conda.access import Channels, import_rattler, rattler_client
from kiln.env.conda.condarc import CondaConfig
from kiln.env.conda.errors import redact_channel_text
from kiln.env.conda.fetch import verify_package
from kiln.env.conda.lock import CondaLock, CondaPackage
from kiln.errors import DependencyError

logger = logging.getLogger(__name__)

LOCK_FILE = "conda-meta/kiln-conda.lock"
"""Where the explicit lock is kept inside the environment (and so inside the image)."""
PIP_LOCK_FILE = "conda-meta/kiln-pip.lock"
_HOST_KEYS = ("extracted_package_dir", "package_tarball_full_path", "link")


def install_conda_environment(
    lock: CondaLock,
    packages_dir: Path,
    target_dir: Path,
    *,
    prefix: str = CONDA_ENV_DIR,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Install ``lock``'s packages (files in ``packages_dir``) into ``target_dir`` (emptied first),
    with ``prefix`` written into their placeholders; return ``target_dir``.

    The pip section is not installed here: its wheels are installed by the image's build with
    ``<prefix>/bin/python -m pip install --no-index --require-hashes --no-deps``."""
    say = progress or (lambda message: logger.debug("%s", message))
    rattler = import_rattler()
    if target_dir.exists():
        shutil.rmtree(target_dir)
    records = []
    for package in lock.packages:
        archive = packages_dir / package.filename
        if not archive.is_file():
            raise DependencyError(f"conda package {package.filename} is not in {str(packages_dir)!r}")
        verify_package(archive, package)
        records.append(_record(rattler, archive, package))
    offline = rattler_client(Channels(()), CondaConfig(ssl_verify=False))
    with tempfile.TemporaryDirectory(prefix="kiln-conda-extract-") as scratch, offline as (client, config):
        try:
            asyncio.run(
                rattler.install(
                    records,
                    target_prefix=target_dir,
                    cache_dir=Path(scratch),
                    installed_packages=[],
                    platform=rattler.Subdir(lock.subdir),
                    execute_link_scripts=False,
                    show_progress=False,
                    client=client,
                    alternative_target_prefix=prefix,
                    config=config,
                )
            )
        except Exception as exc:
            raise DependencyError(
                f"installing the conda environment into {str(target_dir)!r} failed: "
                f"{redact_channel_text(str(exc))[:500]}"
            ) from exc
    # rattler tags the prefix as a cache directory (backup tools skip it); an image needs no tag.
    (target_dir / "CACHEDIR.TAG").unlink(missing_ok=True)
    _clean_records(target_dir, lock)
    _write_locks(target_dir, lock)
    say(f"installed {len(lock.packages)} conda packages for {prefix}")
    return target_dir


def installed_environment(
    lock: CondaLock,
    packages_dir: Path,
    *,
    prefix: str = CONDA_ENV_DIR,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """``lock`` installed for ``prefix``, once per machine: ``<cache>/conda/envs/<key>``.

    Both backends start from this tree (the Docker backend copies it into its build context,
    the OCI backend into the environment layer); it is never modified afterwards. It is made
    in a temporary sibling and renamed into place, so a half-made tree is never reused."""
    key = hashlib.sha256(f"{lock.digest}\0{prefix}".encode()).hexdigest()[:32]
    root = (cache_dir or cache_root()) / "conda" / "envs"
    done = root / key
    if (done / "conda-meta").is_dir():
        return done
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}."))
    try:
        install_conda_environment(lock, packages_dir, scratch / "env", prefix=prefix, progress=progress)
        _normalize_modes(scratch / "env")
        try:
            os.rename(scratch / "env", done)
        except OSError:
            if not (done / "conda-meta").is_dir():  # not another build that got there first
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return done


def _normalize_modes(top: Path) -> None:
    """Directories 0755, files 0644 or 0755: readable by any runtime user whatever the host's umask."""
    for current, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(current) / name
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                path.chmod(0o755)
            elif stat.S_ISREG(mode):
                path.chmod(0o755 if mode & 0o111 else 0o644)
    top.chmod(0o755)


def _record(rattler: Any, archive: Path, package: CondaPackage) -> Any:
    index = rattler.IndexJson.from_package_archive(archive)
    record = rattler.PackageRecord(
        name=index.name,
        version=index.version,
        build=index.build,
        build_number=index.build_number,
        subdir=index.subdir or package.subdir,
        arch=index.arch,
        platform=index.platform,
        noarch=index.noarch,
        depends=index.depends,
        constrains=index.constrains,
        sha256=bytes.fromhex(package.sha256),
        md5=bytes.fromhex(package.md5) if package.md5 else None,
        size=archive.stat().st_size,
        license=index.license,
    )
    return rattler.RepoDataRecord(record, package.filename, archive.resolve().as_uri(), package.channel)


def _clean_records(target_dir: Path, lock: CondaLock) -> None:
    """conda-meta/<package>.json: the locked URL and channel, no host paths, stable key order."""
    by_file = {package.filename: package for package in lock.packages}
    for path in sorted((target_dir / "conda-meta").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        package = by_file.get(str(data.get("fn", "")))
        if package is None:
            continue
        data["url"] = package.url
        data["channel"] = package.channel
        for key in _HOST_KEYS:
            data.pop(key, None)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_locks(target_dir: Path, lock: CondaLock) -> None:
    (target_dir / LOCK_FILE).write_text(lock.explicit(), encoding="utf-8")
    if lock.pip_lock:
        (target_dir / PIP_LOCK_FILE).write_text(lock.pip_lock, encoding="utf-8")
