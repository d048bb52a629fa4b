"""Where the OCI backend's environment goes for interpreters other than the test base's: a bundled
CPython, and ``--env-manager local`` on the official python images' layout (small real trees)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.image.layers.venv_support import RootDirectory

from kiln.image.layers.venv import local_scheme, write_venv
from kiln.oci.basefs import DirectoryFiles

ACTIVATE = (
    'VIRTUAL_ENV=__VENV_DIR__\nPS1=__VENV_PROMPT__"${PS1:-}"\n'
    'export PATH="$VIRTUAL_ENV/"__VENV_BIN_NAME__":$PATH"\n'
)


def python_tree(root: Path, prefix: str, minor: str = "3.12") -> None:
    """An interpreter's files as a CPython install lays them out under ``prefix``."""
    home = root / prefix.lstrip("/")
    (home / "bin").mkdir(parents=True)
    (home / "bin" / f"python{minor}").write_bytes(b"\x7fELF")
    os.symlink(f"python{minor}", home / "bin" / "python3")
    scripts = home / "lib" / f"python{minor}" / "venv" / "scripts" / "common"
    scripts.mkdir(parents=True)
    (scripts / "activate").write_text(ACTIVATE)
    (home / "lib" / f"python{minor}" / "site-packages").mkdir()


def test_a_bundled_python_gets_a_venv_pointing_into_opt_kiln_python(tmp_path: Path) -> None:
    bundled = tmp_path / "python"
    python_tree(bundled, "/")
    dest = tmp_path / "dest"
    write_venv(
        dest,
        python="/opt/kiln/python/bin/python3",
        version="3.12.7",
        files=DirectoryFiles(bundled, "/opt/kiln/python"),
    )
    venv = dest / "opt/kiln/venv"
    assert (venv / "pyvenv.cfg").read_text() == (
        "home = /opt/kiln/python/bin\n"
        "include-system-site-packages = false\n"
        "version = 3.12.7\n"
        "executable = /opt/kiln/python/bin/python3.12\n"
        "command = /opt/kiln/python/bin/python3 -m venv --without-pip /opt/kiln/venv\n"
    )
    assert os.readlink(venv / "bin/python3") == "/opt/kiln/python/bin/python3"
    assert os.readlink(venv / "bin/python") == "python3" and os.readlink(venv / "bin/python3.12") == "python3"
    assert os.readlink(venv / "lib64") == "lib" and (venv / "lib/python3.12/site-packages").is_dir()
    assert (venv / "bin/activate").read_text() == (
        'VIRTUAL_ENV=/opt/kiln/venv\nPS1=\'(venv) \'"${PS1:-}"\nexport PATH="$VIRTUAL_ENV/"bin":$PATH"\n'
    )


def test_local_on_an_official_python_image_uses_its_site_packages(tmp_path: Path) -> None:
    python_tree(tmp_path, "/usr/local")
    scheme = local_scheme("/usr/local/bin/python3", "3.12", RootDirectory(tmp_path))
    assert (scheme.site_packages, scheme.scripts, scheme.data, scheme.interpreter) == (
        "/usr/local/lib/python3.12/site-packages",
        "/usr/local/bin",
        "/usr/local",
        "/usr/local/bin/python3",
    )


def test_local_on_debians_python3_uses_the_usr_local_dist_packages(tmp_path: Path) -> None:
    python_tree(tmp_path, "/usr", "3.11")
    (tmp_path / "usr/lib/python3/dist-packages").mkdir(parents=True)
    os.makedirs(tmp_path / "usr/local/bin")
    os.symlink("/usr/bin/python3", tmp_path / "usr/local/bin/python3")
    scheme = local_scheme("/usr/local/bin/python3", "3.11", RootDirectory(tmp_path))
    assert (scheme.site_packages, scheme.scripts) == (
        "/usr/local/lib/python3.11/dist-packages",
        "/usr/local/bin",
    )
