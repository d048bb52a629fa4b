"""BaseImageInfo from a base's files and config, without running it (what PROBE_SCRIPT finds by running).

The answers match ``kiln.image.probe``'s shell probe: the interpreter is the first
``python3``/``python`` on the config's PATH (the path as found, not resolved), its version
from the config's ``PYTHON_VERSION`` (official python images), else dpkg's record of the
``pythonX.Y-minimal`` package, else the resolved file's name; glibc from dpkg's ``libc6``
or a ``libc-X.Y.so`` file name; nginx and apt-get looked up on PATH; /etc/os-release parsed.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from kiln.image.facts import LIBRARY_DIRS, PYTHON_MINORS
from kiln.image.probe import BaseImageInfo
from kiln.oci.basefs import LayerFiles, realpath

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_VERSIONED = re.compile(r"python(\d+\.\d+)$")
_LIBC_FILE = re.compile(r"^libc-(\d+\.\d+)\.so$")
_DEBIAN_VERSION = re.compile(r"^(?:\d+:)?(\d+(?:\.\d+)+)")


def probe_files(
    image: str, *, image_id: str, os_arch: str, config: Mapping[str, Any], files: LayerFiles
) -> BaseImageInfo:
    """What ``image`` holds, read from ``files`` and its ``config`` (the parsed image config)."""
    env = _env(config)
    path = env.get("PATH") or DEFAULT_PATH
    packages = dpkg_versions(files.read("/var/lib/dpkg/status") or b"")
    python = which(files, path, "python3") or which(files, path, "python")
    pythons = {minor: found for minor in PYTHON_MINORS if (found := which(files, path, f"python{minor}"))}
    version = _python_version(files, python, env, packages) if python else None
    return BaseImageInfo(
        image=image,
        image_id=image_id,
        os_arch=os_arch,
        python=python,
        python_version=version,
        pythons=pythons,
        glibc=_glibc(files, packages),
        has_nginx=which(files, path, "nginx") is not None,
        has_apt=which(files, path, "apt-get") is not None,
        pip_version=_pip_version(files, python, version) if python else None,
        os_release=_os_release(files),
        codename=_os_field(files, "VERSION_CODENAME"),
        libraries=tuple(sorted(_libraries(files))),
        packages=tuple(sorted(packages)),
    )


def _libraries(files: LayerFiles) -> set[str]:
    """The shared libraries in the linker's default directories, as the shell probe lists them."""
    found: set[str] = set()
    for directory in LIBRARY_DIRS:
        for name in files.listdir(directory):
            path = f"{directory}/{name}"
            real = realpath(files, path) if ".so" in name else None
            if real is not None and files.entry(real) is not None:  # as the shell's [ -e ] sees it
                found.add(path)
    return found


def which(files: LayerFiles, path: str, name: str) -> str | None:
    """``command -v name`` over ``path``: the first that resolves to a file (executable or not)."""
    for directory in path.split(":"):
        if not directory:
            continue
        candidate = posixpath.join(directory, name)
        real = realpath(files, candidate)
        entry = files.entry(real) if real else None
        if entry is not None and entry.kind in ("file", "hardlink") and entry.mode & 0o111:
            return candidate
    return None


def dpkg_versions(status: bytes) -> dict[str, str]:
    """Installed package versions from dpkg's status file: ``{"libc6": "2.36-9+deb12u4"}``."""
    versions: dict[str, str] = {}
    for stanza in status.decode("utf-8", "replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "\t")):
                fields[key.strip()] = value.strip()
        name = fields.get("Package")
        if name and "installed" in fields.get("Status", "").split()[-1:] and "Version" in fields:
            versions[name] = fields["Version"]
    return versions


def _env(config: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in (config.get("config") or {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def _python_version(
    files: LayerFiles, python: str, env: Mapping[str, str], packages: Mapping[str, str]
) -> str | None:
    real = realpath(files, python) or python
    match = _VERSIONED.search(posixpath.basename(real))
    minor = match.group(1) if match else None
    declared = env.get("PYTHON_VERSION", "")
    if declared and (minor is None or declared.startswith(minor + ".") or declared == minor):
        return declared
    for name in (f"python{minor}-minimal", f"python{minor}") if minor else ():
        found = _DEBIAN_VERSION.match(packages.get(name, ""))
        if found:
            return found.group(1)
    return minor


def _glibc(files: LayerFiles, packages: Mapping[str, str]) -> str | None:
    for name in ("libc6", "libc6-amd64", "libc6-arm64"):
        found = _DEBIAN_VERSION.match(packages.get(name, ""))
        if found:
            return ".".join(found.group(1).split(".")[:2])
    for directory in ("/lib", "/usr/lib", "/lib64", "/usr/lib64"):
        for sub in ["", *files.listdir(directory)]:
            for name in files.listdir(posixpath.join(directory, sub)):
                libc = _LIBC_FILE.match(name)
                if libc:
                    return libc.group(1)
    return None


def _pip_version(files: LayerFiles, python: str, version: str | None) -> str | None:
    """pip's version when the interpreter can import it (its dist-info in a site directory)."""
    real = realpath(files, python)
    if real is None or version is None:
        return None
    minor = ".".join(version.split(".")[:2])
    prefix = posixpath.dirname(posixpath.dirname(real))
    sites = [f"{prefix}/lib/python{minor}/site-packages", f"{prefix}/lib/python{minor}/dist-packages"]
    if prefix == "/usr":
        sites.append("/usr/lib/python3/dist-packages")
    for site in sites:
        for name in files.listdir(site):
            if name.startswith("pip-") and name.endswith((".dist-info", ".egg-info")):
                return name[len("pip-") :].rsplit(".", 1)[0]
    return None


def _os_release(files: LayerFiles) -> str | None:
    values = _os_values(files)
    if values is None:
        return None
    return f"{values.get('ID', '')}:{values.get('VERSION_ID', '')}"


def _os_field(files: LayerFiles, key: str) -> str | None:
    return (_os_values(files) or {}).get(key) or None


def _os_values(files: LayerFiles) -> dict[str, str] | None:
    data = files.read("/etc/os-release") or files.read("/usr/lib/os-release")
    if data is None:
        return None
    values: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("\"'")
    return values
