"""The conda env manager on the host: read conda.yaml, solve and lock with rattler, fetch, install.

The public API (the backends call these; the modules behind them are private)::

    read_conda_environment(path) -> CondaEnvironment          conda.yaml: channels, specs, pip section
    parse_conda_environment(data, origin=...) -> CondaEnvironment
    read_condarc() -> CondaConfig                              the host's .condarc / $CONDARC
    lock_conda_environment(env, target=..., pip_requirements=..., runtime=...) -> CondaLock
    fetch_conda_packages(lock, dest, channels=env.channels) -> FetchedPackages
    install_conda_environment(lock, packages_dir, target_dir, prefix=CONDA_ENV_DIR) -> Path
    installed_environment(lock, packages_dir, prefix=CONDA_ENV_DIR) -> Path   (the same, cached)
    prepare_conda_environment(env, target=..., work_dir=..., ...) -> PreparedCondaEnvironment
        (lock + fetch conda packages + write conda.lock/conda-pip.lock + fetch the pip wheels)

``CondaLock.explicit()`` is the ``@EXPLICIT`` lock (URL and sha256 of every package),
``CondaLock.pip_lock`` the pip section's hashed lock, ``CondaLock.digest`` their digest.
Every failure is a ``DependencyError`` naming the channel or package, without credentials.
"""

from kiln.env.conda.condarc import CondaConfig, read_condarc
from kiln.env.conda.environment import (
    CondaEnvironment,
    conda_environment,
    parse_conda_environment,
    read_conda_environment,
    write_conda_file,
)
from kiln.env.conda.fetch import FetchedPackages, fetch_conda_packages
from kiln.env.conda.install import (
    LOCK_FILE,
    PIP_LOCK_FILE,
    install_conda_environment,
    installed_environment,
)
from kiln.env.conda.lock import CondaLock, CondaPackage, conda_subdir, lock_conda_environment
from kiln.env.conda.prepare import PreparedCondaEnvironment, prepare_conda_environment

__all__ = [
    "LOCK_FILE",
    "PIP_LOCK_FILE",
    "CondaConfig",
    "CondaEnvironment",
    "CondaLock",
    "CondaPackage",
    "FetchedPackages",
    "PreparedCondaEnvironment",
    "conda_environment",
    "conda_subdir",
    "fetch_conda_packages",
    "install_conda_environment",
    "installed_environment",
    "lock_conda_environment",
    "parse_conda_environment",
    "prepare_conda_environment",
    "read_conda_environment",
    "read_condarc",
    "write_conda_file",
]
