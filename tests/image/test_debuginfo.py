"""kiln.image.debuginfo with the host's real strip, on a shared library gcc builds with debug sections."""

from __future__ import annotations

import ctypes
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from kiln.image import debuginfo
from kiln.image.finish import apply_overlay

SOURCE = "int kiln_answer(int x) { int twice = 2 * x; return twice + 1; }\n"


def debug_sections(path: Path) -> list[str]:
    with open(path, "rb") as handle:
        return [s.name for s in ELFFile(handle).iter_sections() if s.name.startswith(".debug_")]


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    """A wheel whose package holds a shared library built with ``-g`` (and one without)."""
    built = tmp_path / "build"
    built.mkdir()
    (built / "answer.c").write_text(SOURCE)
    for name, flags in (("_answer.so", ["-g"]), ("_plain.so", ["-s"])):
        subprocess.run(
            ["gcc", "-shared", "-fPIC", *flags, "-o", str(built / name), str(built / "answer.c")], check=True
        )
    path = tmp_path / "answer-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(built / "_answer.so", "answer/_answer.so")
        archive.write(built / "_plain.so", "answer/_plain.so")
        archive.writestr("answer/__init__.py", "")
        archive.writestr("answer-1.0.data/scripts/tool", "#!/bin/sh\n")
    return path


def test_a_library_with_debug_sections_gets_a_stripped_copy_that_still_works(
    wheel: Path, tmp_path: Path
) -> None:
    items = debuginfo.strip_wheels([wheel], cache_dir=tmp_path / "cache")
    assert [item.path for item in items] == ["answer/_answer.so"]  # _plain.so has none to strip
    item = items[0]
    original = zipfile.ZipFile(wheel).read("answer/_answer.so")
    assert item.original_sha256 == hashlib.sha256(original).hexdigest()
    assert item.stripped.stat().st_size < len(original)
    assert debug_sections(item.stripped) == []
    assert ctypes.CDLL(str(item.stripped)).kiln_answer(20) == 41  # symbols and code intact


def test_the_overlay_replaces_only_the_file_the_wheel_installed(wheel: Path, tmp_path: Path) -> None:
    items = debuginfo.strip_wheels([wheel], cache_dir=tmp_path / "cache")
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    (site / "answer/_answer.so").chmod(0o755)
    entries = [(item.path, item.original_sha256, str(item.stripped)) for item in items]
    assert apply_overlay(str(site), entries) == 1
    assert debug_sections(site / "answer/_answer.so") == []
    assert (site / "answer/_answer.so").stat().st_mode & 0o777 == 0o755
    assert apply_overlay(str(site), entries) == 0  # already stripped: not the original any more


def test_the_cache_answers_the_second_time(
    wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = debuginfo.strip_wheels([wheel], cache_dir=tmp_path / "cache")
    monkeypatch.setattr(debuginfo, "_strip", lambda *args: pytest.fail("stripped again"))
    assert debuginfo.strip_wheels([wheel], cache_dir=tmp_path / "cache") == first


def test_what_strip_cannot_read_stays_as_it_is(tmp_path: Path) -> None:
    """A truncated ELF with a debug section header is refused by strip: no replacement, no error."""
    wheel = tmp_path / "odd-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("odd/blob.so", b"\x7fELF" + b"\0" * 60)
    assert debuginfo.strip_wheels([wheel], cache_dir=tmp_path / "cache") == ()


def test_a_file_that_is_not_a_wheel_is_left_to_the_install_to_report(tmp_path: Path) -> None:
    broken = tmp_path / "broken-1.0-py3-none-any.whl"
    broken.write_text("not a zip")
    assert debuginfo.strip_wheels([broken], cache_dir=tmp_path / "cache") == ()
