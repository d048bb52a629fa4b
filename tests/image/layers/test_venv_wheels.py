"""Which wheels the OCI backend installs (lock hashes, platform tags, sdists) and how a wheel is
unpacked into a staging root (schemes, scripts, modes, RECORD), with small wheels built here."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from kiln.env.spec import TargetPlatform
from kiln.errors import BuildError, DependencyError
from kiln.image.layers.pyinstall import Scheme, install_wheels, normalize_modes
from kiln.image.layers.wheels import locked_wheels

TARGET = TargetPlatform(python_version="3.11", os_arch="linux/amd64", glibc="2.36")


def make_wheel(directory: Path, name: str, version: str, tag: str = "py3-none-any", **extra: str) -> Path:
    """A real, minimal wheel: one module, optional extra members (``path=text``), METADATA, RECORD."""
    dist_info = f"{name}-{version}.dist-info"
    members = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n",
        **{
            path.replace("__", "/").replace("DATA", f"{name}-{version}.data"): text
            for path, text in extra.items()
        },
    }
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, text in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(text.encode())])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    path = directory / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in members.items():
            info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if "/scripts/" in member else 0o100644) << 16
            archive.writestr(info, text)
        archive.writestr(f"{dist_info}/RECORD", record.getvalue())
    return path


def make_sdist(directory: Path, name: str, version: str) -> Path:
    path = directory / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        data = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def lock_line(name: str, version: str, *files: Path) -> str:
    hashes = "".join(f" \\\n    --hash=sha256:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files)
    return f"{name}=={version}{hashes}\n"


def test_each_entry_gets_its_hash_checked_wheel_in_lock_order(tmp_path: Path) -> None:
    one = make_wheel(tmp_path, "alpha", "1.0")
    two = make_wheel(tmp_path, "beta", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    picked = locked_wheels(lock_line("beta", "2.0", two) + lock_line("alpha", "1.0", one), tmp_path, TARGET)
    assert [(w.entry.pin, w.path) for w in picked] == [("beta==2.0", two), ("alpha==1.0", one)]


def test_an_sdist_only_package_names_itself_and_the_docker_backend(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path, "needs-compiler", "0.3")
    with pytest.raises(BuildError) as caught:
        locked_wheels(lock_line("needs-compiler", "0.3", sdist), tmp_path, TARGET)
    assert (
        "needs-compiler==0.3 has only a source distribution (needs-compiler-0.3.tar.gz)"
        in caught.value.message
    )
    assert "--backend docker" in (caught.value.hint or "")


def test_a_wheel_for_another_platform_or_python_is_refused_by_name(tmp_path: Path) -> None:
    arm = make_wheel(tmp_path, "native", "1.0", tag="cp311-cp311-manylinux_2_17_aarch64")
    newer = make_wheel(tmp_path, "native", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64")
    with pytest.raises(BuildError) as caught:
        locked_wheels(lock_line("native", "1.0", arm, newer), tmp_path, TARGET)
    assert (
        "native==1.0 has no wheel that runs on CPython 3.11 on x86_64-manylinux_2_36" in caught.value.message
    )
    assert arm.name in caught.value.message and newer.name in caught.value.message
    assert "--backend docker" in (caught.value.hint or "")


def test_a_wheel_whose_bytes_changed_after_locking_is_refused(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "alpha", "1.0")
    lock = lock_line("alpha", "1.0", wheel)
    with zipfile.ZipFile(wheel, "a") as archive:
        archive.writestr("alpha/extra.py", "x = 1\n")
    with pytest.raises(DependencyError) as caught:
        locked_wheels(lock, tmp_path, TARGET)
    assert f"wheel {wheel.name} for alpha==1.0 has sha256" in caught.value.message
    assert "matches no --hash of the lock" in caught.value.message


def test_a_lock_entry_without_any_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"package ghost==1\.0 from the lock has no file in the wheelhouse"):
        locked_wheels("ghost==1.0 --hash=sha256:" + "0" * 64 + "\n", tmp_path, TARGET)


def test_a_wheel_lands_in_the_schemes_with_the_images_interpreter(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path,
        "tool",
        "1.0",
        DATA__scripts__tool_sh="#!python\nprint('hi')\n",
        DATA__data__share__tool__README="docs\n",
        **{"tool-1.0.dist-info/entry_points.txt": "[console_scripts]\ntool = tool:main\n"},
    )
    root = tmp_path / "root"
    old = os.umask(0o077)  # a strict host umask must not leak into the image
    try:
        scheme = Scheme(
            site_packages="/opt/kiln/venv/lib/python3.11/site-packages",
            scripts="/opt/kiln/venv/bin",
            data="/opt/kiln/venv",
            include="/opt/kiln/venv/include/site/python3.11",
            interpreter="/opt/kiln/venv/bin/python",
        )
        [installed] = install_wheels(root, [wheel], scheme, requested=True)
        normalize_modes(root)
    finally:
        os.umask(old)
    venv = root / "opt/kiln/venv"
    site = venv / "lib/python3.11/site-packages"
    assert installed.dist_info == "/opt/kiln/venv/lib/python3.11/site-packages/tool-1.0.dist-info"
    assert installed.python_files == ("/opt/kiln/venv/lib/python3.11/site-packages/tool/__init__.py",)
    assert (venv / "bin/tool").read_text().startswith("#!/opt/kiln/venv/bin/python\n")
    assert (venv / "bin/tool_sh").read_text() == "#!/opt/kiln/venv/bin/python\nprint('hi')\n"
    assert (venv / "share/tool/README").read_text() == "docs\n"
    assert (site / "tool-1.0.dist-info/INSTALLER").read_text() == "kiln\n"
    assert (site / "tool-1.0.dist-info/REQUESTED").exists()
    record = (site / "tool-1.0.dist-info/RECORD").read_text()
    assert "../../../bin/tool," in record and "tool/__init__.py,sha256=" in record
    assert {(venv / "bin/tool").stat().st_mode & 0o7777, (site / "tool").stat().st_mode & 0o7777} == {0o755}
    assert (site / "tool/__init__.py").stat().st_mode & 0o7777 == 0o644
