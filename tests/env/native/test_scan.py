"""The ELF scan of real wheels: what lightgbm and numpy need, and who provides it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kiln.env.native.scan import Unprovided, base_sonames, unprovided_libraries, wheel_links
from kiln.env.spec import TargetPlatform
from tests.env.conftest import pure_wheel
from tests.env.native.conftest import LIGHTGBM, NUMPY, SLIM_BASE_FILES

AMD64 = TargetPlatform("3.11", "linux/amd64", "2.36")
ARM64 = TargetPlatform("3.11", "linux/arm64", "2.36")
Wheel = Callable[[str], Path]


def test_lightgbm_on_a_slim_base_lacks_only_libgomp(wheel: Wheel, tmp_path: Path) -> None:
    lightgbm = wheel(LIGHTGBM)
    assert unprovided_libraries([lightgbm], base_files=SLIM_BASE_FILES, target=AMD64, cache_dir=tmp_path) == (
        Unprovided("libgomp.so.1", lightgbm.name, "lightgbm/lib/lib_lightgbm.so"),
    )


def test_glibc_is_provided_by_every_base(wheel: Wheel, tmp_path: Path) -> None:
    lightgbm = wheel(LIGHTGBM)
    needed = {soname for _member, _machine, soname in wheel_links(lightgbm, cache_dir=tmp_path).needs}
    assert {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "ld-linux-x86-64.so.2"} <= needed
    missing = unprovided_libraries([lightgbm], base_files=(), target=AMD64, cache_dir=tmp_path)
    assert {item.soname for item in missing} == {"libgomp.so.1", "libstdc++.so.6", "libgcc_s.so.1"}


def test_a_wheel_that_vendors_its_libraries_needs_nothing(wheel: Wheel, tmp_path: Path) -> None:
    numpy = wheel(NUMPY)
    links = wheel_links(numpy, cache_dir=tmp_path)
    vendored = {soname for member, _machine, soname in links.needs if soname.startswith("libscipy_openblas")}
    assert vendored and vendored <= links.provides
    assert unprovided_libraries([numpy], base_files=SLIM_BASE_FILES, target=AMD64, cache_dir=tmp_path) == ()


def test_a_library_another_wheel_ships_is_provided(wheel: Wheel, tmp_path: Path) -> None:
    name, data = pure_wheel("openmp-runtime", "1.0", {"openmp_runtime.libs/libgomp.so.1": "not an ELF"})
    (tmp_path / name).write_bytes(data)
    found = unprovided_libraries(
        [wheel(LIGHTGBM), tmp_path / name], base_files=SLIM_BASE_FILES, target=AMD64, cache_dir=tmp_path
    )
    assert found == ()


def test_elf_files_for_another_machine_are_not_counted(wheel: Wheel, tmp_path: Path) -> None:
    assert unprovided_libraries([wheel(LIGHTGBM)], base_files=(), target=ARM64, cache_dir=tmp_path) == ()


def test_base_files_count_in_linker_directories_or_as_bare_names() -> None:
    provided = base_sonames(
        [
            "/lib/x86_64-linux-gnu/libz.so.1",
            "usr/lib/x86_64-linux-gnu/libffi.so.8",
            "./usr/local/lib/libpython3.11.so.1.0",
            "libexpat.so.1",
            "/usr/lib/python3/dist-packages/foo/libhidden.so.1",
            "/opt/vendor/lib/libvendor.so.2",
        ],
        AMD64,
    )
    assert {"libz.so.1", "libffi.so.8", "libpython3.11.so.1.0", "libexpat.so.1", "libc.so.6"} <= provided
    assert not {"libhidden.so.1", "libvendor.so.2"} & provided


def test_a_wheels_facts_are_cached_by_its_hash(wheel: Wheel, tmp_path: Path) -> None:
    lightgbm = wheel(LIGHTGBM)
    first = wheel_links(lightgbm, cache_dir=tmp_path)
    [cached] = (tmp_path / "native" / "wheels").glob("*.json")
    assert json.loads(cached.read_text())["provides"] == ["lib_lightgbm.so"]
    assert wheel_links(lightgbm, cache_dir=tmp_path) == first


@pytest.mark.parametrize("content", [b"\x7fELF" + b"\0" * 100, b"\x7fELF truncated" * 10])
def test_a_broken_elf_member_is_skipped(content: bytes, tmp_path: Path) -> None:
    name, data = pure_wheel("broken", "1.0", {"broken/x.so": content.decode("latin-1")})
    (tmp_path / name).write_bytes(data)
    assert wheel_links(tmp_path / name, cache_dir=tmp_path).needs == ()
