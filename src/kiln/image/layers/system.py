"""The system packages layer (nginx, a JRE) for a Debian/Ubuntu base, made on the host without running it.

The Docker backend runs ``apt-get install --no-install-recommends nginx`` in the image.
Here the host's apt resolves the same request against the base's own sources, keys and
dpkg database (``kiln.image.layers.apt``), so only what the base lacks is fetched, for the
base's release and architecture. Each .deb is checked against the sha256 of the signed
index, cached by that hash, unpacked (``kiln.image.layers.debs``), and recorded in
``/var/lib/dpkg/status``, ``/var/lib/dpkg/info/`` and apt's ``extended_states`` so dpkg
and apt in the image (or an image built FROM it) see the packages as installed.

Maintainer scripts are not run. nginx's postinst creates /var/log/nginx's log files,
the sites-enabled/default link and /var/www/html, and enables the service; kiln's
runtime needs none of it (nginx runs as the image's user with ``-e stderr -p /tmp/kiln
-c /tmp/kiln/nginx.conf``). Triggers (ldconfig) are not run either: the libraries land
in the multiarch directories the dynamic loader searches without a cache.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from kiln.env.cache import place, sha256_file, store_file
from kiln.errors import BuildError
from kiln.image.layers import postinst
from kiln.image.layers.apt import ListableFiles, PlannedDeb, PrivateApt
from kiln.image.layers.debs import Overlay, Unpacked, stanzas, unpack

log = logging.getLogger(__name__)

STATUS = "/var/lib/dpkg/status"
INFO_DIR = "/var/lib/dpkg/info"
EXTENDED_STATES = "/var/lib/apt/extended_states"
_DEBIAN_ARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64", "linux/arm64/v8": "arm64"}
_DOCKER_HINT = "use a base image that already has nginx, or build with --backend docker"


def install_system_packages(
    dest: Path,
    *,
    packages: Sequence[str],
    base: ListableFiles,
    arch: str,
    cache_dir: Path,
    image: str = "the base image",
    progress: Callable[[str], None] | None = None,
) -> tuple[str, ...]:
    """Unpack ``packages`` and what they need that ``base`` lacks under ``dest`` (the image's ``/``).

    ``arch`` is the image platform (``linux/amd64``) or a Debian architecture (``amd64``);
    ``cache_dir`` keeps .debs by sha256 and apt's lists (``~/.cache/kiln/debs``); ``image``
    names the base in errors. Returns ``name=version`` of each unpacked package, in apt's
    order; () when the base has them all. BuildError for a base without dpkg and apt
    sources, or a request apt cannot satisfy.
    """
    say = progress or (lambda message: None)
    status = _base_status(base, image, packages)
    installed = {name for name, stanza in stanzas(status) if "\nStatus: install ok installed" in stanza}
    missing = [name for name in packages if name not in installed]
    if not missing:
        return ()
    debian_arch = _DEBIAN_ARCH.get(arch, arch)
    with tempfile.TemporaryDirectory(prefix="kiln-apt-") as tmp:
        apt = PrivateApt(Path(tmp), base, arch=debian_arch, lists_cache=cache_dir / "lists", image=image)
        say(f"apt: reading the package lists of {image}'s sources")
        apt.update()
        planned = apt.describe(apt.plan(missing))
        say(f"apt: {len(planned)} packages to unpack for {', '.join(missing)}")
        debs = _fetch(apt, planned, missing, cache_dir, say)
        unpacked = [unpack(deb, dest, base) for deb in debs]
    _record(dest, status, unpacked, base, arch=debian_arch, requested=set(missing))
    for line in postinst.finish(dest, Overlay(base, dest), unpacked):
        say(line)
    return tuple(f"{u.package}={u.version}" for u in unpacked)


def _base_status(base: ListableFiles, image: str, packages: Sequence[str]) -> str:
    """The base's dpkg status; BuildError unless the base is Debian-like with dpkg."""
    release = _os_release(base)
    family = {release.get("ID", ""), *release.get("ID_LIKE", "").split()}
    status = base.read(STATUS)
    if status is None or not family & {"debian", "ubuntu"}:
        name = release.get("PRETTY_NAME") or release.get("ID") or "an unknown system"
        raise BuildError(
            f"base image {image!r} ({name}) is not Debian or Ubuntu with dpkg, so --backend oci cannot "
            f"install {', '.join(packages)} into it without running it",
            hint=_DOCKER_HINT,
        )
    return status.decode("utf-8")


def _os_release(base: ListableFiles) -> dict[str, str]:
    data = base.read("/etc/os-release") or base.read("/usr/lib/os-release") or b""
    values = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("\"'")
    return values


def _fetch(
    apt: PrivateApt,
    planned: Sequence[PlannedDeb],
    missing: Sequence[str],
    cache_dir: Path,
    say: Callable[[str], None],
) -> list[Path]:
    """The verified .deb of each planned package: from the cache, else downloaded by apt."""
    cached = {deb.sha256: cache_dir / deb.sha256 / deb.filename for deb in planned}
    wanted = [deb for deb in planned if not cached[deb.sha256].is_file()]
    if wanted:
        say(f"apt: downloading {len(wanted)} packages ({sum(d.size for d in wanted) / 1e6:.1f} MB)")
        for deb in planned:
            if cached[deb.sha256].is_file():
                place(cached[deb.sha256], apt.archives / _archive_name(deb))
        apt.download(missing)
        by_hash = {sha256_file(path): path for path in apt.archives.glob("*.deb")}
        for deb in wanted:
            if deb.sha256 not in by_hash:
                raise BuildError(
                    f"apt downloaded no file with the indexed sha256 of {deb.package} {deb.version}"
                )
            _store(by_hash[deb.sha256], cached[deb.sha256])
    for deb in planned:
        if sha256_file(cached[deb.sha256]) != deb.sha256:
            raise BuildError(
                f"the cached {deb.filename} does not match the sha256 of the signed index ({deb.sha256})",
                hint=f"delete {cached[deb.sha256].parent} and build again",
            )
    return [cached[deb.sha256] for deb in planned]


def _store(source: Path, target: Path) -> None:
    """Put a downloaded .deb into the cache under its pool name, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = store_file(source, target.parent, move=True)
    os.replace(staged, target)


def _archive_name(deb: PlannedDeb) -> str:
    """The name apt gives a downloaded package (``name_epoch%3aversion_arch.deb``)."""

    def quote(text: str, chars: str) -> str:
        return "".join(f"%{ord(c):02x}" if c in chars else c for c in text)

    return f"{quote(deb.package, '_:')}_{quote(deb.version, '_:')}_{quote(deb.architecture, '_:.')}.deb"


def _record(
    dest: Path,
    status: str,
    unpacked: Sequence[Unpacked],
    base: ListableFiles,
    *,
    arch: str,
    requested: set[str],
) -> None:
    """dpkg's status and info files, and apt's auto-installed marks, for the unpacked packages."""
    new = {u.package: u for u in unpacked}
    kept = [stanza for name, stanza in stanzas(status) if name not in new]
    text = "\n".join([*kept, *(u.stanza for u in unpacked)])
    _write(dest, STATUS, text.encode("utf-8"), 0o644)
    for u in unpacked:
        listing = "".join(f"{path}\n" for path in u.paths)
        _write(dest, f"{INFO_DIR}/{u.info_name}.list", listing.encode("utf-8"), 0o644)
        for member, data, mode in u.info:
            _write(dest, f"{INFO_DIR}/{u.info_name}.{member}", data, mode)
    auto = [u.package for u in unpacked if u.package not in requested]
    if auto:
        # apt marks what it pulled in as dependencies, so ``apt-get autoremove`` can tell them apart
        states = (base.read(EXTENDED_STATES) or b"").decode("utf-8").strip("\n")
        marks = [f"Package: {name}\nArchitecture: {arch}\nAuto-Installed: 1\n" for name in auto]
        _write(dest, EXTENDED_STATES, "\n".join([states + "\n", *marks] if states else marks).encode(), 0o644)
    for directory in ("/var", "/var/lib", "/var/lib/dpkg", INFO_DIR, "/var/lib/apt"):
        if (dest / directory.lstrip("/")).is_dir():
            (dest / directory.lstrip("/")).chmod(0o755)


def _write(dest: Path, image_path: str, data: bytes, mode: int) -> None:
    path = dest / image_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
