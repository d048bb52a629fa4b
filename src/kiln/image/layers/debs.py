"""One .deb unpacked into a staging root over a base, and the dpkg database entries that record it.

``dpkg-deb`` (the host's) reads the package; kiln writes its files where dpkg would on
the base: a path under a directory that is a symlink in the base (``/lib`` on a
merged-/usr Debian) goes where the link points, so the layer never replaces the base's
link with a directory. File modes come from the package (setuid bits included).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kiln.errors import BuildError
from kiln.image.layers.apt import ListableFiles
from kiln.oci.basefs import realpath
from kiln.oci.types import FileEntry

# dpkg's field order in /var/lib/dpkg/status; other fields follow in the package's order.
_STATUS_ORDER = (
    "Package", "Essential", "Protected", "Status", "Priority", "Section", "Installed-Size", "Origin",
    "Maintainer", "Bugs", "Architecture", "Multi-Arch", "Source", "Version", "Replaces", "Provides",
    "Depends", "Pre-Depends", "Recommends", "Suggests", "Breaks", "Conflicts", "Enhances", "Conffiles",
    "Description",
)  # fmt: skip
_INFO_FILES = (
    "preinst", "postinst", "prerm", "postrm", "config", "templates", "triggers", "shlibs", "symbols",
    "md5sums", "conffiles",
)  # fmt: skip
"""Control members dpkg keeps as ``/var/lib/dpkg/info/<package>.<member>``."""


@dataclass(frozen=True)
class Unpacked:
    """What dpkg would record for one unpacked package."""

    package: str
    version: str
    info_name: str
    """``nginx``, or ``libssl3:amd64`` for a ``Multi-Arch: same`` package."""
    stanza: str
    """The status stanza (``Status: install ok installed``), ending in a newline."""
    paths: tuple[str, ...]
    """Every path the package ships, as dpkg lists them in ``info/<name>.list``."""
    info: tuple[tuple[str, bytes, int], ...]
    """(member, bytes, mode) of the control files dpkg keeps in ``info/``."""


class Overlay:
    """The base's files with the staging root's on top: what dpkg (or a postinst) would see."""

    def __init__(self, base: ListableFiles, root: Path) -> None:
        self.base = base
        self.root = root

    def entry(self, path: str) -> FileEntry | None:
        host = self.root / path.lstrip("/")
        try:
            info = host.lstat()
        except OSError:
            return self.base.entry(path)
        if stat.S_ISLNK(info.st_mode):
            return FileEntry(path, "symlink", 0o777, target=os.readlink(host))
        return FileEntry(path, "dir" if stat.S_ISDIR(info.st_mode) else "file", stat.S_IMODE(info.st_mode))

    def read(self, path: str) -> bytes | None:
        real = realpath(self, path) or path
        host = self.root / real.lstrip("/")
        return host.read_bytes() if host.is_file() else self.base.read(real)

    def listdir(self, path: str) -> list[str]:
        real = realpath(self, path) or path
        host = self.root / real.lstrip("/")
        mine = {child.name for child in host.iterdir()} if host.is_dir() and not host.is_symlink() else set()
        return sorted(mine | set(self.base.listdir(real)))


def unpack(deb: Path, root: Path, base: ListableFiles) -> Unpacked:
    """Unpack ``deb`` under ``root`` (the image's ``/``) over ``base``; BuildError for a bad package."""
    control = _members(_dpkg_deb("--ctrl-tarfile", deb))
    if "control" not in control:
        raise BuildError(f"{deb.name} has no control file (not a Debian package?)")
    fields = _parse_control(control["control"][0].decode("utf-8"))
    package, version = fields.get("Package", ""), fields.get("Version", "")
    merged = Overlay(base, root)
    paths = _extract(deb, root, merged)
    conffiles = [line.strip() for line in control.get("conffiles", (b"", 0))[0].decode().splitlines()]
    sums = [f" {path} {_md5(merged, path)}" for path in conffiles if path]
    if sums:
        fields["Conffiles"] = "\n" + "\n".join(sums)
    fields["Status"] = "install ok installed"
    info_name = package
    if fields.get("Multi-Arch") == "same":
        info_name = f"{package}:{fields.get('Architecture', '')}"
    info = tuple(
        (member, data, mode) for member, (data, mode) in sorted(control.items()) if member in _INFO_FILES
    )
    return Unpacked(package, version, info_name, _stanza(fields), paths, info)


def _dpkg_deb(option: str, deb: Path) -> bytes:
    try:
        done = subprocess.run(["dpkg-deb", option, str(deb)], capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise BuildError(
            "dpkg-deb is not installed on this host; --backend oci needs it to unpack system packages",
            hint="install dpkg (apt-get install dpkg), or build with --backend docker",
        ) from exc
    if done.returncode != 0:
        raise BuildError(
            f"dpkg-deb {option} {deb.name} failed", log_tail=done.stderr.decode("utf-8", "replace")[-2000:]
        )
    return done.stdout


def _members(tar_bytes: bytes) -> dict[str, tuple[bytes, int]]:
    """Regular files of a control tar by name (``./postinst`` -> ``postinst``)."""
    found: dict[str, tuple[bytes, int]] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isreg() else None
            if handle is not None:
                found[posixpath.normpath(member.name).lstrip("/")] = (
                    handle.read(),
                    stat.S_IMODE(member.mode),
                )
    return found


def _extract(deb: Path, root: Path, merged: Overlay) -> tuple[str, ...]:
    """Write the package's files under ``root``; return its paths in dpkg's ``.list`` form."""
    listed: list[str] = []
    data = _dpkg_deb("--fsys-tarfile", deb)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            path = _image_path(member.name, deb)
            listed.append("/." if path == "/" else path)
            if path == "/":
                continue
            parent = realpath(merged, posixpath.dirname(path))
            if parent is None:
                raise BuildError(f"{deb.name} ships {path} before its directory")
            target = posixpath.join(parent, posixpath.basename(path))
            _write(tar, member, target, root, merged, deb)
    return tuple(listed)


def _image_path(name: str, deb: Path) -> str:
    path = posixpath.normpath("/" + name)
    if ".." in name.split("/"):
        raise BuildError(f"{deb.name} holds a path that leaves its root: {name!r}")
    return path


def _write(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: str, root: Path, merged: Overlay, deb: Path
) -> None:
    host = root / target.lstrip("/")
    existing = merged.entry(target)
    mode = stat.S_IMODE(member.mode)
    if member.isdir():
        if existing is not None and existing.kind == "symlink":
            return  # dpkg keeps a symlink to a directory where the package has a directory
        host.mkdir(parents=True, exist_ok=True)
        host.chmod(mode)
        return
    _check_inside(host, root, deb)
    if host.is_symlink() or host.exists():
        host.unlink()
    host.parent.mkdir(parents=True, exist_ok=True)
    if member.issym():
        host.symlink_to(member.linkname)
    elif member.islnk():
        linked = posixpath.normpath("/" + member.linkname)
        parent = realpath(merged, posixpath.dirname(linked)) or posixpath.dirname(linked)
        try:
            os.link(root / parent.lstrip("/") / posixpath.basename(linked), host)
        except OSError as exc:
            raise BuildError(f"{deb.name} hard-links {member.name} to {linked}, not in the package") from exc
    elif member.isreg():
        handle = tar.extractfile(member)
        if handle is None:
            raise BuildError(f"cannot read {member.name} from {deb.name}")
        with host.open("wb") as out:
            while chunk := handle.read(1 << 20):
                out.write(chunk)
        host.chmod(mode)
    else:
        raise BuildError(f"{deb.name} ships {member.name}, which is not a file, directory or link")


def _check_inside(host: Path, root: Path, deb: Path) -> None:
    """Refuse to write through a symlink on the host (a link the package made earlier)."""
    current = root
    for part in host.parent.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise BuildError(
                f"{deb.name} writes below the link {current.relative_to(root)}, which kiln refuses"
            )


def _md5(merged: Overlay, path: str) -> str:
    """md5 of a conffile as unpacked (dpkg records it so a later upgrade knows it is unchanged)."""
    data = merged.read(path)
    return hashlib.md5(data, usedforsecurity=False).hexdigest() if data is not None else "newconffile"


def _parse_control(text: str) -> dict[str, str]:
    """Fields of a control file; continuation lines stay in their field's value (with newlines)."""
    fields: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and name:
            fields[name] += "\n" + line
        elif ":" in line:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def _stanza(fields: dict[str, str]) -> str:
    ordered = [name for name in _STATUS_ORDER if name in fields]
    ordered += [name for name in fields if name not in _STATUS_ORDER]
    lines = []
    for name in ordered:
        value = fields[name]
        lines.append(f"{name}:{value}" if value.startswith("\n") else f"{name}: {value}")
    return "\n".join(lines) + "\n"


def stanzas(status: str) -> Iterator[tuple[str, str]]:
    """(package name, stanza text with its newline) for each stanza of a dpkg status file."""
    for block in status.split("\n\n"):
        block = block.strip("\n")
        if not block:
            continue
        name = next(
            (line.split(":", 1)[1].strip() for line in block.splitlines() if line.startswith("Package:")), ""
        )
        yield name, block + "\n"
