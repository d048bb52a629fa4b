"""Everything the image build needs for a conda environment, prepared on the host in one call.

``prepare_conda_environment`` writes into ``work_dir`` (part of the build context)::

    conda.lock          the @EXPLICIT lock: every conda package's URL and sha256
    conda-pip.lock      the pip section's lock with --hash lines (absent when there is none)
    conda-pkgs/         exactly the conda package files the lock names, checked
    conda-wheelhouse/   exactly the wheels conda-pip.lock names, for the environment's Python

Nothing written there names a credential. The build then installs offline:
``install_conda_environment(lock, conda-pkgs, <dir>)`` (on the host for ``--backend oci``, or
in a builder stage), then ``<prefix>/bin/python -m pip install --no-index --find-links
conda-wheelhouse --require-hashes --no-deps -r conda-pip.lock``.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln.env.cache import atomic_write, cache_root
from kiln.env.conda.condarc import CondaConfig, read_condarc
from kiln.env.conda.environment import CondaEnvironment
from kiln.env.conda.fetch import fetch_conda_packages
from kiln.env.conda.lock import CondaLock, lock_conda_environment
from kiln.env.fetch import fetch_wheels
from kiln.env.lockfile import add_hashes, ensure_no_credentials, parse_lock
from kiln.env.spec import TargetPlatform

CONDA_LOCK_NAME = "conda.lock"
PIP_LOCK_NAME = "conda-pip.lock"
PACKAGES_DIR = "conda-pkgs"
WHEELHOUSE_DIR = "conda-wheelhouse"


@dataclass(frozen=True)
class PreparedCondaEnvironment:
    """A locked, fetched conda environment, ready to be installed without a network."""

    lock: CondaLock
    conda_lock_file: Path
    packages_dir: Path
    pip_lock_file: Path | None
    """None when the environment has no pip section."""
    wheelhouse: Path | None
    target: TargetPlatform
    """The image platform, with ``python_version`` set to the conda environment's Python."""

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of both locks: the image's lock label."""
        return self.lock.digest


def prepare_conda_environment(
    environment: CondaEnvironment,
    *,
    target: TargetPlatform,
    work_dir: Path,
    pip_requirements: Sequence[str] | None = None,
    runtime: Sequence[str] = (),
    config: CondaConfig | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> PreparedCondaEnvironment:
    """Lock ``environment`` for ``target``, fetch its conda packages and pip wheels into ``work_dir``.

    The arguments are ``lock_conda_environment``'s; DependencyError before anything is written
    when the channels cannot be read or the specs cannot be solved."""
    config = config if config is not None else read_condarc()
    cache_dir = cache_dir or cache_root()
    lock = lock_conda_environment(
        environment, target=target, pip_requirements=pip_requirements, runtime=runtime, config=config,
        cache_dir=cache_dir, progress=progress,
    )  # fmt: skip
    work_dir.mkdir(parents=True, exist_ok=True)
    env_target = dataclasses.replace(target, python_version=lock.python_version)
    packages = fetch_conda_packages(
        lock, work_dir / PACKAGES_DIR, channels=environment.channels, config=config, cache_dir=cache_dir,
        progress=progress,
    )  # fmt: skip
    conda_lock = work_dir / CONDA_LOCK_NAME
    atomic_write(conda_lock, lock.explicit().encode("utf-8"))
    lock, pip_lock, wheelhouse = _pip_part(lock, work_dir, env_target, cache_dir, progress)
    return PreparedCondaEnvironment(lock, conda_lock, packages.directory, pip_lock, wheelhouse, env_target)


def _pip_part(
    lock: CondaLock,
    work_dir: Path,
    target: TargetPlatform,
    cache_dir: Path,
    progress: Callable[[str], None] | None,
) -> tuple[CondaLock, Path | None, Path | None]:
    """Fetch the pip lock's wheels; the lock gains the hashes of wheels built here from sdists."""
    pip_lock, wheelhouse = work_dir / PIP_LOCK_NAME, work_dir / WHEELHOUSE_DIR
    pip_lock.unlink(missing_ok=True)
    if wheelhouse.exists():
        shutil.rmtree(wheelhouse)
    entries = parse_lock(lock.pip_lock) if lock.pip_lock.strip() else ()
    if not entries:
        return lock, None, None
    fetched = fetch_wheels(entries, target=target, dest=wheelhouse, cache_dir=cache_dir)
    if fetched.extra_hashes:
        lock = dataclasses.replace(lock, pip_lock=add_hashes(lock.pip_lock, dict(fetched.extra_hashes)))
    ensure_no_credentials(lock.pip_lock, "the conda environment's pip lock")
    atomic_write(pip_lock, lock.pip_lock.encode("utf-8"))
    if progress is not None:
        cached = fetched.from_cache
        progress(f"fetched {len(fetched.wheels)} wheels for the pip section ({cached} from cache)")
    return lock, pip_lock, wheelhouse
