"""Repackage PyPI wheels as conda packages, the way conda-forge's grayskull recipes install them.

Each is written in the ``.conda`` format (zstd: scipy extracts in a second, not fifteen).
A pure-Python wheel becomes a ``noarch: python`` package (files under ``site-packages/``,
console scripts as ``link.json`` entry points, which the installer turns into ``bin/``
scripts). A manylinux wheel becomes a ``linux-64`` package with its files under
``lib/python3.11/site-packages/`` and a dependency on ``python 3.11.*``: its vendored
libraries (``numpy.libs/`` ...) travel with it, as they do in the wheel. Dependencies are
the wheel's ``Requires-Dist`` for CPython 3.11 on Linux, without extras.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.conda_channel.package import PackageMeta, write_package

PYTHON_DEPENDENCY = "python >=3.11,<3.12.0a0"
_MARKERS = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def download_wheels(pins: list[str], dest: Path) -> list[Path]:
    """The wheels of ``pins`` (``name==version``) for CPython 3.11 manylinux x86_64, via pip."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
        "--implementation", "cp", "--abi", "cp311",
        "--dest", str(dest), *pins,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip download {pins} failed:\n{result.stderr[-3000:]}")
    wanted = {canonicalize_name(pin.split("==")[0]): pin.split("==")[1] for pin in pins}
    found = []
    for wheel in sorted(dest.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
        if wanted.get(name) == str(version):
            found.append(wheel)
    return found


def repackage(wheel: Path, out_dir: Path, work: Path, *, known: set[str]) -> Path:
    """The conda package of ``wheel``; ``known`` names the packages the channel will have
    (optional requirements of extras are dropped; a missing required one is an error)."""
    name, version, _build, tags = parse_wheel_filename(wheel.name)
    pure = all(tag.platform == "any" for tag in tags)
    staged = work / f"{name}-{version}"
    if staged.exists():
        shutil.rmtree(staged)
    site = staged / ("site-packages" if pure else "lib/python3.11/site-packages")
    site.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
        for member in archive.infolist():
            mode = (member.external_attr >> 16) & 0o777
            if mode & 0o111:
                (site / member.filename).chmod(0o755)
    dist_info = next(site.glob("*.dist-info"))
    metadata = Parser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
    (dist_info / "INSTALLER").write_text("conda\n")
    (dist_info / "RECORD").unlink(missing_ok=True)  # its hashes would lie once paths move
    _move_scripts(site, staged, pure)
    depends = [PYTHON_DEPENDENCY, *_depends(metadata.get_all("Requires-Dist") or [], known)]
    meta = PackageMeta(
        name=str(name),
        version=str(version),
        build="py_0" if pure else "py311_0",
        subdir="noarch" if pure else "linux-64",
        depends=tuple(depends),
        noarch_python=pure,
        entry_points=_entry_points(dist_info),
        license=metadata.get("License-Expression") or "unknown",
        format=".conda",
    )
    return write_package(staged, meta, out_dir, placeholder=None)


def _depends(requires: list[str], known: set[str]) -> list[str]:
    depends = []
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(_MARKERS):
            continue
        name = canonicalize_name(requirement.name)
        if name not in known:
            if requirement.marker is None or "extra" not in str(requirement.marker):
                raise RuntimeError(f"{line!r} is required but not among the channel's packages: pin it too")
            continue
        spec = ",".join(sorted(str(clause) for clause in requirement.specifier))
        depends.append(f"{name} {spec}".strip())
    return sorted(depends)


def _entry_points(dist_info: Path) -> tuple[str, ...]:
    path = dist_info / "entry_points.txt"
    if not path.is_file():
        return ()
    points: list[str] = []
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section == "console_scripts":
            script, target = (part.strip() for part in line.split("=", 1))
            points.append(f"{script} = {target}")
    return tuple(sorted(points))


def _move_scripts(site: Path, staged: Path, pure: bool) -> None:
    """``<name>.data/scripts`` -> ``python-scripts/`` (noarch) or ``bin/``; other .data dirs merge."""
    for data in site.glob("*.data"):
        scripts = data / "scripts"
        if scripts.is_dir():
            dest = staged / ("python-scripts" if pure else "bin")
            dest.mkdir(parents=True, exist_ok=True)
            for script in scripts.iterdir():
                shutil.move(str(script), dest / script.name)
        for kind in ("purelib", "platlib"):
            if (data / kind).is_dir():
                shutil.copytree(data / kind, site, dirs_exist_ok=True)
        shutil.rmtree(data)
