"""Install wheels into a staging root that mirrors the image, with pypa/installer: no pip, no image run.

``installer`` unpacks a wheel the way pip does (``.data`` schemes, console scripts with
the image's interpreter in the shebang, a RECORD); kiln adds what pip does around it:
bytecode and file modes that do not depend on the host's umask.

Bytecode: ``compile_bytecode`` compiles what a list of wheels installed (kiln's own layer, a
conda environment's pip section) by the rules of ``kiln.image.finish``, which finishes whole
environments: unchecked-hash pycs, one fresh process per distribution with
``PYTHONHASHSEED=0``, no column tables. It needs a host interpreter of the image's ``X.Y``
(``host_python_for``); without one the image gets no bytecode (imports compile in memory).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.sources import WheelFile

from kiln.errors import BuildError
from kiln.image import finish

log = logging.getLogger(__name__)

INSTALLER_NAME = b"kiln\n"
"""The INSTALLER file of every distribution kiln installs (pip writes ``pip``)."""


@dataclass(frozen=True)
class Scheme:
    """Where a wheel's parts go in the image (absolute image paths) and which Python runs its scripts."""

    site_packages: str
    scripts: str
    data: str
    include: str
    """Headers go to ``<include>/<distribution name>`` (pip's layout)."""
    interpreter: str
    """The shebang of console scripts: ``/opt/kiln/venv/bin/python``."""

    def for_wheel(self, distribution: str) -> dict[str, str]:
        return {
            "purelib": self.site_packages,
            "platlib": self.site_packages,
            "scripts": self.scripts,
            "data": self.data,
            "headers": f"{self.include}/{distribution}",
        }


@dataclass(frozen=True)
class Installed:
    """One installed distribution: its ``.dist-info`` dir and the ``.py`` files it wrote (image paths)."""

    dist_info: str
    python_files: tuple[str, ...]


def install_wheels(root: Path, wheels: Sequence[Path], scheme: Scheme, *, requested: bool) -> list[Installed]:
    """Install each wheel under ``root`` (the image's ``/``); BuildError naming a broken wheel."""
    installed = []
    for wheel in wheels:
        try:
            with WheelFile.open(wheel) as source:
                # Names only: every byte is already pinned by the lock's sha256 of the whole wheel
                # (checked in kiln.image.layers.wheels), and hashing each member again costs seconds.
                source.validate_record(validate_contents=False)
                destination = SchemeDictionaryDestination(
                    scheme.for_wheel(source.distribution),
                    interpreter=scheme.interpreter,
                    script_kind="posix",
                    destdir=str(root),
                )
                metadata = {"INSTALLER": INSTALLER_NAME}
                if requested:
                    metadata["REQUESTED"] = b""
                install(source, destination, additional_metadata=metadata)
                dist_info = f"{scheme.site_packages}/{source.dist_info_dir}"
        except (InstallerError, ValueError, OSError) as exc:
            raise BuildError(f"installing wheel {wheel.name} into the image layer failed: {exc}") from exc
        installed.append(Installed(dist_info, _python_files(root, dist_info, scheme.site_packages)))
    return installed


def _python_files(root: Path, dist_info: str, site_packages: str) -> tuple[str, ...]:
    """The ``.py`` files a distribution's RECORD lists inside site-packages (image paths, sorted)."""
    record = (root / dist_info.lstrip("/") / "RECORD").read_text(encoding="utf-8")
    base = PurePosixPath(site_packages)
    found = set()
    for row in csv.reader(io.StringIO(record)):
        if row and row[0].endswith(".py"):
            path = PurePosixPath(os.path.normpath(base / row[0]))
            if path.is_relative_to(base):
                found.add(str(path))
    return tuple(sorted(found))


# --- bytecode -----------------------------------------------------------------------------


def host_python_for(version: str) -> str | None:
    """A host interpreter of Python ``X.Y`` to compile bytecode for the image, or None."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        return None
    probe = subprocess.run(
        [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2], sys.version_info.releaselevel)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found if probe.returncode == 0 and probe.stdout.split() == [version, "final"] else None


def compile_bytecode(root: Path, installed: Sequence[Installed], python: str) -> None:
    """Write pycs next to every surviving ``.py`` file of ``installed``, one process per distribution,
    by the rules of ``kiln.image.finish`` (unchecked-hash, no column tables, ``PYTHONHASHSEED=0``)."""

    def one(item: Installed) -> None:
        site = PurePosixPath(item.dist_info).parent
        host_site = os.path.realpath(root / str(site).lstrip("/"))
        files = [os.path.realpath(root / path.lstrip("/")) for path in item.python_files]
        files = [path for path in files if os.path.isfile(path)]
        if not files:
            return
        error = finish.compile_files(python, files, host_site, str(site))
        if error:
            raise BuildError(
                f"compiling the bytecode of {PurePosixPath(item.dist_info).name} with {python} failed",
                log_tail=error,
            )

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        list(pool.map(one, installed))


# --- modes ----------------------------------------------------------------------------------


def normalize_modes(top: Path) -> None:
    """Directories 0755, files 0644 (0755 when any execute bit is set); symlinks untouched.

    What pip leaves in a Docker build with umask 022, whatever the host's umask is.
    """
    top.chmod(0o755)
    for current, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(current) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            if stat.S_ISDIR(mode):
                path.chmod(0o755)
            else:
                path.chmod(0o755 if mode & 0o111 else 0o644)
