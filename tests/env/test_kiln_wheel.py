"""The wheel of the running kiln: byte-identical when rebuilt, and installable."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

import uv

import kiln
from kiln.env.kiln_wheel import build_kiln_wheel


def test_same_kiln_gives_the_same_bytes(tmp_path: Path) -> None:
    first, first_digest = build_kiln_wheel(tmp_path / "a")
    second, second_digest = build_kiln_wheel(tmp_path / "b")
    assert first.name == second.name == f"kiln-{kiln.__version__}-py3-none-any.whl"
    assert first.read_bytes() == second.read_bytes()
    assert first_digest == second_digest == "sha256:" + hashlib.sha256(first.read_bytes()).hexdigest()


def test_contents_and_record(tmp_path: Path) -> None:
    wheel, _ = build_kiln_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "kiln/__init__.py" in names
        assert "kiln/env/check.py" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        dist_info = f"kiln-{kiln.__version__}.dist-info"
        assert names[-1] == f"{dist_info}/RECORD"
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        record = archive.read(f"{dist_info}/RECORD").decode().splitlines()
        assert len(record) == len(names)
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            if name.endswith("RECORD"):
                continue
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={expected}" and int(size) == len(data)
        wheel_meta = archive.read(f"{dist_info}/WHEEL").decode()
        assert "Tag: py3-none-any" in wheel_meta


def test_installs_with_no_deps_into_a_fresh_venv(tmp_path: Path) -> None:
    wheel, _ = build_kiln_wheel(tmp_path / "dist")
    venv = tmp_path / "venv"
    uv_bin = uv.find_uv_bin()
    subprocess.run([uv_bin, "venv", "--quiet", str(venv)], check=True, cwd=tmp_path)
    python = venv / "bin" / "python"
    subprocess.run(
        [uv_bin, "pip", "install", "--quiet", "--no-deps", "--python", str(python), str(wheel)], check=True
    )
    result = subprocess.run(
        [str(python), "-c", "import kiln, kiln.settings; print(kiln.__file__)"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(venv))
