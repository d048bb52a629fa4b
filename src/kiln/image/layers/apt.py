"""The host's apt-get, pointed at a base image's sources, keys and dpkg database instead of the host's.

apt reads the file named by ``APT_CONFIG`` before anything else; kiln's file sends every
``Dir::Etc`` and ``Dir::State`` setting to a private directory holding copies of the
base's ``sources.list``, ``sources.list.d``, trusted keys, pinning preferences and dpkg
status, and keeps the host's own apt.conf.d out (its hooks and pins are the host's
business). Only the host's network settings (proxies, CA files, retries) are carried over
from ``apt-config dump``. apt then resolves against what the *base* has installed, for the
base's release and architecture, and downloads into a private archive directory; the
Release files' signatures and the packages' hashes are checked by apt as always.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln.errors import BuildError
from kiln.oci.types import BaseFiles

log = logging.getLogger(__name__)

_FORWARDED = (
    "Acquire::http",
    "Acquire::ftp",
    "Acquire::socks",
    "Acquire::Retries",
    "Acquire::Check-Valid-Until",
    "Acquire::Check-Date",
    "Acquire::ForceIPv4",
    "Acquire::ForceIPv6",
)
"""Host settings carried over (``Acquire::http`` covers ``Acquire::https`` too)."""
_INST = re.compile(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) .*\[(\S+)\]\)")
_REMV = re.compile(r"^Remv (\S+)")
_SIGNED_BY_822 = re.compile(r"^(Signed-By:[ \t]*)(/\S+)[ \t]*$", re.MULTILINE | re.IGNORECASE)
_SIGNED_BY_LINE = re.compile(r"(signed-by=)(/[^\s\]]+)", re.IGNORECASE)


class ListableFiles(BaseFiles, Protocol):
    """A ``BaseFiles`` that can also list a directory (apt's ``*.d`` directories)."""

    def listdir(self, path: str) -> list[str]:
        """Names in directory ``path`` (symlinks followed), sorted; [] when there is none."""
        ...


@dataclass(frozen=True)
class PlannedDeb:
    """One package apt would unpack, with what the signed index says about its file."""

    package: str
    version: str
    architecture: str
    filename: str
    """The file's name in the archive pool (``nginx_1.22.1-9+deb12u9_amd64.deb``)."""
    sha256: str
    size: int


class PrivateApt:
    """apt-get and apt-cache with a configuration of their own under ``root`` (a temp dir)."""

    def __init__(self, root: Path, base: ListableFiles, *, arch: str, lists_cache: Path, image: str) -> None:
        """Copy the base's apt sources, keys, preferences and dpkg status under ``root``; apt's
        package lists are kept in ``lists_cache/<key of those sources and keys>``."""
        self.root = root
        self.arch = arch
        self.image = image
        self.archives = root / "archives"
        for directory in (
            root / "etc" / "apt.conf.d",
            root / "etc" / "sources.list.d",
            root / "etc" / "trusted.gpg.d",
            root / "etc" / "preferences.d",
            root / "keys",
            root / "dpkg" / "updates",
            root / "cache",
            root / "log",
            self.archives / "partial",
        ):
            directory.mkdir(parents=True, exist_ok=True)
        self._copy_base(base)
        lists = lists_cache / _lists_key(root, arch)
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        self.lists = lists
        self.config = root / "apt.conf"
        self.config.write_text(self._config_text(lists), encoding="utf-8")

    def _copy_base(self, base: ListableFiles) -> None:
        etc = self.root / "etc"
        found = 0
        sources = base.read("/etc/apt/sources.list")
        if sources is not None:
            found += 1
            (etc / "sources.list").write_text(self._own_keys(sources.decode("utf-8"), base), encoding="utf-8")
        for name in base.listdir("/etc/apt/sources.list.d"):
            data = base.read(f"/etc/apt/sources.list.d/{name}")
            if data is not None and name.endswith((".list", ".sources")):
                found += 1
                text = self._own_keys(data.decode("utf-8"), base)
                (etc / "sources.list.d" / name).write_text(text, encoding="utf-8")
        if not found:
            raise BuildError(
                f"base image {self.image!r} has no apt sources (/etc/apt/sources.list, "
                "/etc/apt/sources.list.d/), so kiln cannot fetch system packages for it",
                hint="use a base image that has nginx, or build with --backend docker",
            )
        _copy(base, "/etc/apt/trusted.gpg", etc / "trusted.gpg")
        for name in base.listdir("/etc/apt/trusted.gpg.d"):
            _copy(base, f"/etc/apt/trusted.gpg.d/{name}", etc / "trusted.gpg.d" / name)
        _copy(base, "/etc/apt/preferences", etc / "preferences")
        for name in base.listdir("/etc/apt/preferences.d"):
            _copy(base, f"/etc/apt/preferences.d/{name}", etc / "preferences.d" / name)
        status = base.read("/var/lib/dpkg/status")
        (self.root / "dpkg" / "status").write_bytes(status or b"")

    def _own_keys(self, text: str, base: ListableFiles) -> str:
        """The sources with each ``Signed-By`` key file copied out of the base and pointed at."""

        def swap(match: re.Match[str]) -> str:
            path = match.group(2)
            local = self.root / "keys" / f"{hashlib.sha256(path.encode()).hexdigest()[:12]}-{Path(path).name}"
            if not _copy(base, path, local):
                raise BuildError(
                    f"base image {self.image!r} names the apt key {path} in its sources, but has no such file"
                )
            return f"{match.group(1)}{local}"

        return _SIGNED_BY_LINE.sub(swap, _SIGNED_BY_822.sub(swap, text))

    def _config_text(self, lists: Path) -> str:
        etc = self.root / "etc"
        settings = {
            "Dir::Etc::Parts": etc / "apt.conf.d",
            "Dir::Etc::Main": etc / "apt.conf",
            "Dir::Etc::SourceList": etc / "sources.list",
            "Dir::Etc::SourceParts": etc / "sources.list.d",
            "Dir::Etc::Trusted": etc / "trusted.gpg",
            "Dir::Etc::TrustedParts": etc / "trusted.gpg.d",
            "Dir::Etc::Preferences": etc / "preferences",
            "Dir::Etc::PreferencesParts": etc / "preferences.d",
            "Dir::State": self.root / "state",
            "Dir::State::Lists": lists,
            "Dir::State::status": self.root / "dpkg" / "status",
            "Dir::Cache": self.root / "cache",
            "Dir::Cache::Archives": self.archives,
            "Dir::Log": self.root / "log",
            "APT::Architecture": self.arch,
            "APT::Install-Recommends": "false",
            "APT::Install-Suggests": "false",
            "APT::Sandbox::User": "root",
            "Acquire::Languages": "none",
            "Dpkg::Use-Pty": "false",
        }
        lines = [f'{key} "{value}";' for key, value in settings.items()]
        lines.append(f'APT::Architectures {{ "{self.arch}"; }};')
        return "\n".join([*_host_network_settings(), *lines]) + "\n"

    def run(self, tool: str, *args: str) -> str:
        """Run ``tool`` (apt-get, apt-cache) with this configuration; BuildError with its output."""
        environment = dict(
            os.environ, APT_CONFIG=str(self.config), DEBIAN_FRONTEND="noninteractive", LC_ALL="C"
        )
        try:
            done = subprocess.run(
                [tool, *args], capture_output=True, text=True, env=environment, check=False, timeout=1800
            )
        except FileNotFoundError as exc:
            raise BuildError(
                f"{tool} is not installed on this host; --backend oci uses the host's apt to fetch "
                f"system packages for base image {self.image!r}",
                hint="run kiln on a Debian/Ubuntu host, use a base image with nginx, or --backend docker",
            ) from exc
        if done.returncode != 0:
            raise BuildError(
                f"{tool} {' '.join(args)} for base image {self.image!r} failed",
                log_tail=(done.stderr or done.stdout)[-3000:],
            )
        return done.stdout

    def update(self) -> None:
        """``apt-get update`` into the shared lists cache; builds running at once take turns (apt
        itself would refuse the second with "Could not get lock")."""
        with open(self.lists.parent / f"{self.lists.name}.kiln-lock", "w") as turn:
            fcntl.flock(turn, fcntl.LOCK_EX)
            self.run("apt-get", "update", "-q")

    def plan(self, packages: Sequence[str]) -> list[tuple[str, str, str]]:
        """(package, version, architecture) apt would install, in its order; BuildError if it would remove."""
        output = self.run("apt-get", "install", "--simulate", "--yes", "-q", *packages)
        removed = [m.group(1) for line in output.splitlines() if (m := _REMV.match(line))]
        if removed:
            raise BuildError(
                f"installing {', '.join(packages)} on base image {self.image!r} would remove "
                f"{', '.join(removed)}, which kiln cannot do without running the image",
                hint="build with --backend docker, or use a base image that already has these packages",
            )
        return [
            (m.group(1), m.group(2), m.group(3)) for line in output.splitlines() if (m := _INST.match(line))
        ]

    def describe(self, planned: Sequence[tuple[str, str, str]]) -> list[PlannedDeb]:
        """The signed index's record (file name, sha256, size) of each planned package."""
        output = self.run("apt-cache", "show", "--no-all-versions", *(f"{p}:{a}={v}" for p, v, a in planned))
        records: dict[tuple[str, str], dict[str, str]] = {}
        for block in output.split("\n\n"):
            fields = dict(
                (line.split(":", 1)[0], line.split(":", 1)[1].strip())
                for line in block.splitlines()
                if ":" in line and not line.startswith(" ")
            )
            if "Package" in fields:
                records.setdefault((fields["Package"], fields.get("Version", "")), fields)
        found = []
        for package, version, arch in planned:
            record = records.get((package, version))
            if record is None or "SHA256" not in record:
                raise BuildError(
                    f"apt has no SHA256 for {package} {version} in the indexes of {self.image!r}"
                )
            found.append(
                PlannedDeb(
                    package,
                    version,
                    arch,
                    Path(record["Filename"]).name,
                    record["SHA256"],
                    int(record["Size"]),
                )
            )
        return found

    def download(self, packages: Sequence[str]) -> None:
        self.run("apt-get", "install", "--download-only", "--yes", "-q", *packages)


def _copy(base: BaseFiles, path: str, target: Path) -> bool:
    data = base.read(path)
    if data is None:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return True


def _host_network_settings() -> list[str]:
    """The host's proxy, TLS and retry settings as apt.conf lines (``apt-config dump``)."""
    if shutil.which("apt-config") is None:
        return []
    done = subprocess.run(["apt-config", "dump"], capture_output=True, text=True, check=False)
    return [line for line in done.stdout.splitlines() if line.startswith(_FORWARDED)]


def _lists_key(root: Path, arch: str) -> str:
    """Names apt's lists cache for one set of sources, keys and architecture."""
    digest = hashlib.sha256(arch.encode())
    for top in (root / "etc", root / "keys"):
        for path in sorted(top.rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
