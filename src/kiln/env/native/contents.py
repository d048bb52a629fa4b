"""Which Debian package ships a shared library, from the Debian archive's Contents index.

``dists/<suite>/<component>/Contents-<arch>.gz`` lists every file of every package in the
suite. kiln keeps the lines for the dynamic linker's default directories, as a JSON map
``{soname: [packages]}`` under ``<kiln cache>/debian-contents/`` (about 1 MB, built from
a 12 MB download once per archive). Delete that folder to read the archive again.
The download goes through the host's apt (``apt-helper download-file``: its proxy, CA and
auth settings) where there is one, else httpx with the proxy environment and system CAs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from kiln.env.cache import atomic_write
from kiln.env.redact import redact
from kiln.errors import DependencyError

logger = logging.getLogger(__name__)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
APT_HELPER = Path("/usr/lib/apt/apt-helper")
_FORMAT = 1
_ARCHES = {"linux/amd64": ("amd64", "x86_64-linux-gnu"), "linux/arm64": ("arm64", "aarch64-linux-gnu")}


@dataclass(frozen=True)
class DebianArchive:
    """One suite, component and architecture of a Debian (or Ubuntu) archive."""

    suite: str = "bookworm"
    arch: str = "amd64"
    """Debian architecture name (``amd64``, ``arm64``)."""
    mirror: str = DEFAULT_MIRROR
    component: str = "main"

    def contents_urls(self) -> tuple[str, ...]:
        """Where the Contents index is: per component (Debian since 9), else per suite (Ubuntu)."""
        dists = f"{self.mirror.rstrip('/')}/dists/{self.suite}"
        return (f"{dists}/{self.component}/Contents-{self.arch}.gz", f"{dists}/Contents-{self.arch}.gz")

    @property
    def triplet(self) -> str:
        return {arch: triplet for arch, triplet in _ARCHES.values()}.get(self.arch, "")


def archive_for(os_arch: str, suite: str = "bookworm", *, apt_dir: Path = Path("/etc/apt")) -> DebianArchive:
    """The archive for a base image of ``suite`` on ``os_arch`` (``linux/amd64``), from the mirror the
    host's apt sources use for that suite, else ``deb.debian.org``."""
    arch = _ARCHES.get(os_arch, ("amd64", ""))[0]
    mirror = _host_mirror(suite, apt_dir) or DEFAULT_MIRROR
    return DebianArchive(suite=suite, arch=arch, mirror=mirror)


class SonameIndex:
    """``soname -> Debian packages`` for one archive; implements ``kiln.env.native.needs.PackageLookup``."""

    def __init__(self, packages: Mapping[str, tuple[str, ...]], *, source: str) -> None:
        self.packages = dict(packages)
        self.source = source
        """The Contents URL the index was read from (for notes)."""

    def package_for(self, soname: str) -> str | None:
        """The package that ships ``soname`` in a linker directory; the first by name when several do."""
        candidates = self.packages.get(soname, ())
        return candidates[0] if candidates else None


def soname_index(archive: DebianArchive, *, cache_dir: Path) -> SonameIndex:
    """The soname index of ``archive``, read from kiln's cache or built from the archive's Contents."""
    key = hashlib.sha256(
        json.dumps([archive.mirror, archive.suite, archive.component, archive.arch]).encode()
    )
    cached = (
        cache_dir
        / "debian-contents"
        / f"{archive.suite}-{archive.component}-{archive.arch}-{key.hexdigest()[:16]}.json"
    )
    if cached.is_file():
        data = json.loads(cached.read_text(encoding="utf-8"))
        if data.get("format") == _FORMAT:
            return SonameIndex({k: tuple(v) for k, v in data["sonames"].items()}, source=data["source"])
    scratch = cache_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="contents-", dir=scratch) as tmp:
        url, path = _download_first(archive.contents_urls(), Path(tmp) / "Contents.gz")
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as lines:
            sonames = parse_contents(lines, archive.triplet)
    record = {"format": _FORMAT, "source": url, "sonames": {k: list(v) for k, v in sorted(sonames.items())}}
    atomic_write(cached, json.dumps(record, sort_keys=True).encode("utf-8"))
    logger.debug("indexed %d sonames from %s", len(sonames), url)
    return SonameIndex(sonames, source=url)


def parse_contents(lines: Iterable[str], triplet: str) -> dict[str, tuple[str, ...]]:
    """``{soname: packages}`` for the shared libraries a Contents index lists in linker directories."""
    dirs = {"lib", "usr/lib", "lib64", "usr/lib64"} | (
        {f"lib/{triplet}", f"usr/lib/{triplet}"} if triplet else set()
    )
    found: dict[str, set[str]] = {}
    for line in lines:
        path, _, owners = line.rstrip("\n").rpartition(" ")
        path = path.strip()
        if ".so" not in path or not owners:
            continue
        parent, _, name = path.rpartition("/")
        if parent not in dirs or not re.search(r"\.so(\.|$)", name):
            continue
        for owner in owners.split(","):
            found.setdefault(name, set()).add(owner.rpartition("/")[2])
    return {name: tuple(sorted(packages, key=_preference(name))) for name, packages in found.items()}


def _preference(soname: str) -> Callable[[str], tuple[bool, bool, str]]:
    """Runtime packages first (debug and development ones ship some .so files too), then the one
    Debian's library policy names after the soname (libsystemd.so.0 -> libsystemd0, not libelogind0)."""
    stem, _, version = soname.partition(".so")
    policy = (stem + version.lstrip(".").split(".")[0]).lower()

    def key(package: str) -> tuple[bool, bool, str]:
        return (package.endswith(("-dbg", "-dev", "-dbgsym")), package.replace("-", "") != policy, package)

    return key


def _download_first(urls: tuple[str, ...], dest: Path) -> tuple[str, Path]:
    errors: list[str] = []
    for url in urls:
        try:
            _download(url, dest)
            return url, dest
        except DependencyError as exc:
            errors.append(exc.message)
    raise DependencyError(
        "cannot download the Debian Contents index to map shared libraries to packages: " + "; ".join(errors),
        hint="kiln needs the archive's Contents-<arch>.gz (about 12 MB, once); check the proxy, or name "
        "the packages with --system-package",
    )


def _download(url: str, dest: Path) -> None:
    if APT_HELPER.is_file() and shutil.which("apt-config"):
        result = subprocess.run(
            [str(APT_HELPER), "download-file", url, str(dest)], capture_output=True, text=True, timeout=600
        )
        if result.returncode == 0 and dest.is_file():
            return
        logger.debug("apt-helper could not download %s: %s", url, redact(result.stderr.strip()))
    try:
        with httpx.stream(
            "GET", url, verify=ssl.create_default_context(), follow_redirects=True, timeout=60.0
        ) as response:
            if response.status_code != 200:
                raise DependencyError(f"{url}: HTTP {response.status_code}")
            with dest.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise DependencyError(f"{url}: {exc}") from exc


def _host_mirror(suite: str, apt_dir: Path) -> str | None:
    """The first ``deb`` URI the host's apt sources use for ``suite`` (one-line and deb822 formats)."""
    texts = []
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]:
        if path.is_file() and path.suffix in (".list", ".sources", ""):
            texts.append((path.suffix == ".sources", path.read_text(encoding="utf-8", errors="replace")))
    for deb822, text in texts:
        for uri, suites in _deb822_entries(text) if deb822 else _one_line_entries(text):
            if suite in suites:
                return uri
    return None


def _one_line_entries(text: str) -> list[tuple[str, tuple[str, ...]]]:
    entries: list[tuple[str, tuple[str, ...]]] = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], (words[2],)))
    return entries


def _deb822_entries(text: str) -> list[tuple[str, tuple[str, ...]]]:
    entries: list[tuple[str, tuple[str, ...]]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "#")):
                fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            entries.extend(
                (uri, tuple(fields.get("suites", "").split())) for uri in fields.get("uris", "").split()
            )
    return entries
