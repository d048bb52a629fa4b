"""Solve a conda environment on the host with rattler and lock it: every package's URL and sha256.

A finished solve is cached by its inputs (``kiln.env.conda.solved``), so rebuilding the same
environment locks the same packages without asking the channels again.

The lock is an ``@EXPLICIT`` file (``conda create --file`` and rattler read it) whose lines
are ``<bare URL>#sha256:<hex>``, plus the ``pip:`` section locked by uv with hashes for the
environment's own Python (``kiln.env.conda.pip``). Its digest labels the image. The solve
runs for the image's platform (``linux-64`` or ``linux-aarch64``) with that platform's
virtual packages (``__glibc`` of the base image), whatever the host is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.env.cache import cache_root
from kiln.env.conda.access import Channels, import_rattler, rattler_client, resolve_channels
from kiln.env.conda.condarc import CondaConfig, read_condarc
from kiln.env.conda.environment import CondaEnvironment
from kiln.env.conda.errors import explain_solve_failure, missing_packages, unreachable_channel
from kiln.env.conda.pip import lock_pip_section
from kiln.env.conda.solved import load_solve, solve_key, store_solve
from kiln.env.lockfile import ensure_no_credentials
from kiln.env.spec import TargetPlatform
from kiln.errors import DependencyError

logger = logging.getLogger(__name__)

_SUBDIRS = {"linux/amd64": "linux-64", "linux/arm64": "linux-aarch64"}
_ARCHSPEC = {"linux-64": "x86_64", "linux-aarch64": "aarch64"}


@dataclass(frozen=True)
class CondaPackage:
    """One locked conda package."""

    name: str
    version: str
    build: str
    subdir: str
    filename: str
    url: str
    """Where it was fetched from, without credentials."""
    channel: str
    """The channel's bare URL."""
    sha256: str
    md5: str | None = None
    size: int | None = None

    @property
    def explicit_line(self) -> str:
        return f"{self.url}#sha256:{self.sha256}"


@dataclass(frozen=True)
class CondaLock:
    """A solved conda environment for one platform, and its pip section locked with hashes."""

    subdir: str
    """``linux-64`` or ``linux-aarch64``."""
    channels: tuple[str, ...]
    """Bare channel URLs, in priority order."""
    specs: tuple[str, ...]
    """The conda specs that were solved."""
    packages: tuple[CondaPackage, ...]
    """Every package of the environment, sorted by name."""
    pip_lock: str = ""
    """uv's lock of the pip section for the environment's Python (``--hash`` lines); may be empty."""
    pip_requirements: tuple[str, ...] = ()
    """The pip section's requirement lines (the model's and kiln's runtime) that were locked."""

    @property
    def python_version(self) -> str:
        """``3.11``: major.minor of the environment's ``python`` package."""
        python = self.package("python")
        if python is None:
            raise DependencyError("the conda environment has no 'python' package")
        return ".".join(python.version.split(".")[:2])

    def package(self, name: str) -> CondaPackage | None:
        return next((package for package in self.packages if package.name == name), None)

    def explicit(self) -> str:
        """The conda lock file: ``@EXPLICIT`` and one ``<url>#sha256:<hex>`` line per package."""
        lines = [
            "# kiln conda lock: install with 'conda create --file' or rattler, offline from the",
            "# fetched packages. Each line: <package URL>#sha256:<hash>.",
            f"# platform: {self.subdir}",
            *(f"# channel: {channel}" for channel in self.channels),
            "@EXPLICIT",
            *(package.explicit_line for package in self.packages),
        ]
        return "\n".join(lines) + "\n"

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` over the conda lock and the pip lock: the image's lock label."""
        digest = hashlib.sha256(self.explicit().encode("utf-8"))
        digest.update(b"\0" + self.pip_lock.encode("utf-8"))
        return "sha256:" + digest.hexdigest()


def conda_subdir(target: TargetPlatform) -> str:
    """The conda platform of an image platform: ``linux/amd64`` -> ``linux-64``."""
    try:
        return _SUBDIRS[target.os_arch]
    except KeyError:
        raise DependencyError(
            f"--env-manager conda cannot build for {target.os_arch}",
            hint=f"conda environments are built for {', '.join(_SUBDIRS)}",
        ) from None


def lock_conda_environment(
    environment: CondaEnvironment,
    *,
    target: TargetPlatform,
    pip_requirements: Sequence[str] | None = None,
    runtime: Sequence[str] = (),
    config: CondaConfig | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> CondaLock:
    """Solve ``environment`` for ``target`` and lock it, with its pip section.

    ``pip_requirements`` replaces the environment's pip section (e.g. after kiln's MLflow
    choice); ``runtime`` (kiln's runtime requirements) is added to it. ``config`` is the
    host's .condarc (read when None). Raises DependencyError, before anything is built, for
    an unreachable channel, a package no channel has, or specs that cannot be satisfied."""
    say = progress or (lambda message: logger.debug("%s", message))
    config = config if config is not None else read_condarc()
    cache_dir = cache_dir or cache_root()
    subdir = conda_subdir(target)
    channels = resolve_channels(environment.channels, config)
    pip_lines = tuple(environment.pip if pip_requirements is None else pip_requirements) + tuple(runtime)
    specs = _specs(environment.specs, target, needs_pip=bool(pip_lines))
    key = solve_key(channels, specs, subdir, target.glibc)
    packages = load_solve(cache_dir, key)
    cached = packages is not None
    if packages is None:
        say(f"solving {len(specs)} conda specs for {subdir} from {channels.describe()}")
        records = asyncio.run(_solve(channels, config, specs, subdir, target, cache_dir))
        packages = tuple(sorted((_package(record) for record in records), key=lambda package: package.name))
        store_solve(cache_dir, key, packages)
    lock = CondaLock(subdir, channels.urls, specs, packages)
    say(f"locked {len(packages)} conda packages" + (" (solve from cache)" if cached else ""))
    if pip_lines:
        pip_target = dataclasses.replace(target, python_version=lock.python_version)
        pip_lock = lock_pip_section(
            pip_lines, runtime=tuple(runtime), packages=packages, target=pip_target, cache_dir=cache_dir
        )
        lock = dataclasses.replace(lock, pip_lock=pip_lock, pip_requirements=pip_lines)
    ensure_no_credentials(lock.explicit(), "the conda lock")
    return lock


def _specs(specs: Sequence[str], target: TargetPlatform, *, needs_pip: bool) -> tuple[str, ...]:
    rattler = import_rattler()
    names = set()
    for spec in specs:
        try:
            parsed = rattler.MatchSpec(spec)
        except Exception as exc:
            raise DependencyError(f"conda spec {spec!r} is not a valid match spec: {exc}") from exc
        names.add(parsed.name.normalized if parsed.name is not None else "")
    extra = [] if "python" in names else [f"python {target.python_version}.*"]
    if needs_pip and "pip" not in names:
        extra.append("pip")
    return (*extra, *specs)


async def _solve(
    channels: Channels,
    config: CondaConfig,
    specs: Sequence[str],
    subdir: str,
    target: TargetPlatform,
    cache_dir: Path,
) -> list[Any]:
    rattler = import_rattler()
    from rattler.exceptions import GatewayError, SolverError

    with rattler_client(channels, config) as (client, _rattler_config):
        gateway = rattler.Gateway(cache_dir=cache_dir / "conda" / "repodata", client=client)
        platforms = [subdir, "noarch"]
        names = [rattler.MatchSpec(spec).name.normalized for spec in specs]
        found: set[str] = set()
        for channel in channels.channels:
            try:
                per_channel = await gateway.query([channel.url], platforms, names, recursive=False)
            except Exception as exc:
                raise unreachable_channel(channel, exc) from exc
            found |= {record.name.normalized for records in per_channel for record in records}
        missing = [spec for spec, name in zip(specs, names) if name not in found]
        if missing:
            raise missing_packages(missing, channels, subdir)
        try:
            return list(
                await rattler.solve(
                    sources=list(channels.urls),
                    specs=list(specs),
                    gateway=gateway,
                    platforms=platforms,
                    virtual_packages=_virtual_packages(subdir, target),
                )
            )
        except SolverError as exc:
            raise explain_solve_failure(exc, specs, channels, subdir) from exc
        except GatewayError as exc:
            raise unreachable_channel(None, exc, channels) from exc


def _virtual_packages(subdir: str, target: TargetPlatform) -> list[Any]:
    rattler = import_rattler()

    def virtual(name: str, version: str, build: str = "0") -> Any:
        return rattler.GenericVirtualPackage(
            rattler.PackageName(name), rattler.Version(version), rattler.BuildString(build)
        )

    # The image's platform, not the host's: the base image's glibc, a current kernel.
    return [
        virtual("__unix", "0"),
        virtual("__linux", "5.10"),
        virtual("__glibc", target.glibc),
        virtual("__archspec", "1", _ARCHSPEC[subdir]),
    ]


def _package(record: Any) -> CondaPackage:
    sha256 = record.sha256.hex() if record.sha256 else None
    if not sha256:
        raise DependencyError(
            f"conda package {record.file_name} in {record.channel} has no sha256 in the channel's "
            "repodata; kiln locks every package by its sha256",
            hint="use a channel whose index lists sha256 (conda-index and rattler-index write it)",
        )
    return CondaPackage(
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        subdir=record.subdir,
        filename=record.file_name,
        url=record.url,
        channel=record.channel or "",
        sha256=sha256,
        md5=record.md5.hex() if record.md5 else None,
        size=record.size,
    )
