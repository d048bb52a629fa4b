"""Missing libraries mapped to Debian packages: the real Contents index, the base's packages, the errors."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kiln.env.cache import cache_root
from kiln.env.native import (
    MissingLibrary,
    NativeNeeds,
    SonameIndex,
    archive_for,
    describe,
    find_native_needs,
    installed_packages,
    packages_to_add,
    require_resolved,
    soname_index,
)
from kiln.env.native.contents import parse_contents
from kiln.env.spec import TargetPlatform
from kiln.errors import DependencyError
from tests.docker_support import BASE_IMAGE
from tests.env.native.conftest import LIGHTGBM, NUMPY, SLIM_BASE_FILES, SLIM_BASE_PACKAGES

AMD64 = TargetPlatform("3.11", "linux/amd64", "2.36")
Wheel = Callable[[str], Path]

# Lines as bookworm's main/Contents-amd64.gz has them (path, spaces, section/package[,...]).
CONTENTS = """\
usr/lib/x86_64-linux-gnu/libgomp.so.1                   libs/libgomp1
usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0               libs/libgomp1
usr/lib/gcc/x86_64-linux-gnu/12/libgomp.so              devel/libgcc-12-dev
lib/x86_64-linux-gnu/libc.so.6                          libs/libc6
lib32/libc.so.6                                         libs/libc6-i386
usr/lib/x86_64-linux-gnu/libsystemd.so.0                admin/libelogind0,libs/libsystemd0
usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3  libs/libopenblas0-pthread
usr/share/doc/libgomp1/changelog.Debian.gz              libs/libgomp1
usr/lib/x86_64-linux-gnu/libfoo.so.2                    libdevel/libfoo-dev,libs/libfoo2
"""


def test_contents_lines_in_linker_directories_map_sonames_to_runtime_packages() -> None:
    index = parse_contents(CONTENTS.splitlines(keepends=True), "x86_64-linux-gnu")
    assert index == {
        "libgomp.so.1": ("libgomp1",),
        "libgomp.so.1.0.0": ("libgomp1",),
        "libc.so.6": ("libc6",),
        "libsystemd.so.0": ("libsystemd0", "libelogind0"),
        "libfoo.so.2": ("libfoo2", "libfoo-dev"),
    }


def test_the_host_apt_sources_name_the_mirror(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://mirror.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb822.example/debian\nSuites: trixie trixie-updates\nComponents: main\n"
    )
    assert archive_for("linux/amd64", "bookworm", apt_dir=tmp_path).mirror == "http://mirror.example/debian"
    trixie = archive_for("linux/arm64", "trixie", apt_dir=tmp_path)
    assert (trixie.mirror, trixie.arch) == ("http://deb822.example/debian", "arm64")
    assert archive_for("linux/amd64", "noble", apt_dir=tmp_path).mirror == "http://deb.debian.org/debian"
    assert trixie.contents_urls()[0] == "http://deb822.example/debian/dists/trixie/main/Contents-arm64.gz"


def test_installed_packages_come_from_dpkg_status() -> None:
    status = (
        "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nDescription: GNU C\n more\n\n"
        "Package: libgomp1\nStatus: deinstall ok config-files\n\n"
        "Package: zlib1g\nStatus: install ok installed\n"
    )
    assert installed_packages(status) == {"libc6", "zlib1g"}


def test_only_packages_the_base_lacks_are_added_and_a_note_says_why() -> None:
    needs = NativeNeeds(
        (
            MissingLibrary("libgomp.so.1", "lightgbm-4.7.0-py3-none-any.whl", "lib_lightgbm.so", "libgomp1"),
            MissingLibrary("libz.so.1", "x-1-py3-none-any.whl", "x.so", "zlib1g"),
        )
    )
    assert packages_to_add(needs, SLIM_BASE_PACKAGES) == ("libgomp1",)
    assert packages_to_add(needs, [*SLIM_BASE_PACKAGES, "libgomp1:amd64"]) == ()
    assert describe(needs, ("libgomp1",)) == (
        "added Debian packages for native libraries the wheels need: libgomp1 (libgomp.so.1 for lightgbm)"
    )


def test_a_library_no_package_ships_fails_naming_it_and_its_wheel(wheel: Wheel, tmp_path: Path) -> None:
    lightgbm = wheel(LIGHTGBM)
    needs = find_native_needs(
        [lightgbm],
        base_files=SLIM_BASE_FILES,
        target=AMD64,
        cache_dir=tmp_path,
        lookup=SonameIndex({}, source="an empty archive"),
    )
    assert needs.unresolved == needs.libraries
    with pytest.raises(DependencyError) as caught:
        require_resolved(needs)
    assert caught.value.message == (
        "no Debian package ships the shared libraries the environment needs: 'libgomp.so.1' needed by "
        f"lightgbm/lib/lib_lightgbm.so in {lightgbm.name}"
    )


def test_nothing_missing_reads_no_archive(wheel: Wheel, tmp_path: Path) -> None:
    needs = find_native_needs([wheel(NUMPY)], base_files=SLIM_BASE_FILES, target=AMD64, cache_dir=tmp_path)
    assert needs == NativeNeeds()
    assert not (tmp_path / "debian-contents").exists()


@pytest.mark.slow
def test_the_real_bookworm_archive_maps_sonames_to_packages() -> None:
    # kiln's own cache (KILN_CACHE_DIR or ~/.cache/kiln): CI downloads the 12 MB index once.
    index = soname_index(archive_for("linux/amd64", "bookworm"), cache_dir=cache_root())
    assert index.source.endswith("/dists/bookworm/main/Contents-amd64.gz")
    assert index.package_for("libgomp.so.1") == "libgomp1"
    assert index.package_for("libc.so.6") == "libc6"
    assert index.package_for("libstdc++.so.6") == "libstdc++6"
    assert index.package_for("libsystemd.so.0") == "libsystemd0"
    assert index.package_for("libnothing-kiln.so.9") is None


@pytest.mark.slow
def test_lightgbm_on_a_slim_base_needs_libgomp1(wheel: Wheel, tmp_path: Path) -> None:
    lightgbm = wheel(LIGHTGBM)
    needs = find_native_needs(
        [lightgbm, wheel(NUMPY)],
        base_files=SLIM_BASE_FILES,
        target=AMD64,
        cache_dir=cache_root(),
        suite="bookworm",
    )
    assert needs == NativeNeeds(
        (MissingLibrary("libgomp.so.1", lightgbm.name, "lightgbm/lib/lib_lightgbm.so", "libgomp1"),)
    )
    require_resolved(needs)
    assert packages_to_add(needs, SLIM_BASE_PACKAGES) == ("libgomp1",)


@pytest.mark.docker
@pytest.mark.slow
def test_the_real_slim_base_image_lacks_libgomp1_for_lightgbm(wheel: Wheel) -> None:
    # What a backend passes: the base's library files (as `ls` or the OCI layers list them) and its
    # dpkg status.
    script = (
        "ls -d /usr/lib/x86_64-linux-gnu/* /usr/lib64/* /usr/local/lib/*; echo ---; cat /var/lib/dpkg/status"
    )
    listing = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", BASE_IMAGE, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    files, _, status = listing.partition("---\n")
    lightgbm = wheel(LIGHTGBM)
    needs = find_native_needs([lightgbm], base_files=files.split(), target=AMD64, cache_dir=cache_root())
    assert [(lib.soname, lib.package) for lib in needs.libraries] == [("libgomp.so.1", "libgomp1")]
    assert packages_to_add(needs, installed_packages(status)) == ("libgomp1",)
