"""A relocatable CPython conda package, compiled from Debian's pristine upstream source.

No python.org or conda channel is reachable here, and no PyPI package ships a standalone
CPython that installs without a download from elsewhere, so the interpreter is built the
way conda-build builds conda-forge's ``python``:

* the source is Debian's ``python3.11_<version>.orig.tar.gz`` (upstream's tarball, unpatched),
  fetched with ``apt-get source --download-only`` through a private ``deb-src`` list, so the
  host's apt configuration is neither needed nor touched; its sha256 is pinned here;
* ``./configure --prefix=<a 200-odd character placeholder>``: every path CPython compiles in
  (``bin/python3.11``: binary; ``_sysconfigdata``, ``python3.11-config``, the Makefile: text)
  holds the placeholder, which the installer replaces with the environment's real prefix;
* an ``$ORIGIN``-relative RPATH (``bin/`` and ``lib/python3.11/lib-dynload/``) and the
  non-base shared libraries the extension modules link (OpenSSL, libffi, SQLite, ...) copied
  into ``lib/``, so the package runs on a Debian base that has no Python and no OpenSSL;
* tests, IDLE, tkinter, the static ``libpython3.11.a`` and ``__pycache__`` are left out;
* ``-O1`` without debug info, which compiles in a third of the time of ``-O3 -g``.

The result is cached by its inputs (build.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

VERSION = "3.11.2"
SOURCE_PACKAGE = "python3.11"
ORIG_TARBALL = f"python3.11_{VERSION}.orig.tar.gz"
ORIG_SHA256 = "2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849"
PLACEHOLDER = "/opt/kiln-conda-placeholder/" + "_placehold" * 20
"""The build prefix: long, so that any real prefix fits when a binary placeholder is padded."""

_SOURCES = (
    "deb-src http://deb.debian.org/debian bookworm main\n"
    "deb-src http://deb.debian.org/debian bookworm-updates main\n"
)
_BUNDLED_LIBRARIES = (
    "libssl.so.3",
    "libcrypto.so.3",
    "libffi.so.8",
    "libsqlite3.so.0",
    "libbz2.so.1.0",
    "liblzma.so.5",
    "libuuid.so.1",
    "libz.so.1",
    "libncursesw.so.6",
    "libtinfo.so.6",
    "libreadline.so.8",
)
_DROP = (
    "lib/python3.11/test",
    "lib/python3.11/idlelib",
    "lib/python3.11/tkinter",
    "lib/python3.11/turtledemo",
    "lib/python3.11/ensurepip",
    "lib/python3.11/lib2to3/tests",
    "share/man",
)
_CONFIGURE = (
    "--without-ensurepip",
    "--disable-test-modules",
    "--with-system-expat=no",
    # -O1 and no debug info: a third of -O3 -g's compile time; fast enough for tests.
    "OPT=-DNDEBUG -fwrapv -O1",
    # make turns $$ into $, the shell keeps the quoted $ORIGIN for the linker.
    "LDFLAGS=-Wl,-rpath='$$ORIGIN/../lib:$$ORIGIN/../..'",
)


def fetch_source(downloads: Path) -> Path:
    """Debian's orig tarball of CPython (checked against ORIG_SHA256), downloaded once."""
    tarball = downloads / ORIG_TARBALL
    if tarball.is_file() and _sha256(tarball) == ORIG_SHA256:
        return tarball
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kiln-apt-src-") as scratch:
        root = Path(scratch)
        (root / "lists" / "partial").mkdir(parents=True)
        (root / "sources.list").write_text(_SOURCES)
        options = [
            "-o", f"Dir::Etc::SourceList={root / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={root / 'lists'}",
            "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root",
        ]  # fmt: skip
        _run(["apt-get", *options, "update"], cwd=root)
        version = _debian_version(root, options)
        _run(["apt-get", *options, "source", "--download-only", f"{SOURCE_PACKAGE}={version}"], cwd=root)
        shutil.copyfile(root / ORIG_TARBALL, tarball)
    if _sha256(tarball) != ORIG_SHA256:
        tarball.unlink()
        raise RuntimeError(f"{ORIG_TARBALL} does not have the pinned sha256 {ORIG_SHA256}")
    return tarball


def build_cpython(tarball: Path, work: Path) -> Path:
    """Configure, compile and stage CPython under ``work``; return the staged prefix directory."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _run(["tar", "xzf", str(tarball)], cwd=work)
    source = work / f"Python-{VERSION}"
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "LC_ALL": "C"}
    _run(["./configure", f"--prefix={PLACEHOLDER}", *_CONFIGURE], cwd=source, env=env)
    _run(["make", f"-j{os.cpu_count() or 2}"], cwd=source, env=env)
    destdir = work / "destdir"
    _run(["make", "install", f"DESTDIR={destdir}"], cwd=source, env=env)
    staged = destdir / PLACEHOLDER.lstrip("/")
    _trim(staged)
    _bundle_libraries(staged)
    return staged


def _trim(staged: Path) -> None:
    for relative in _DROP:
        target = staged / relative
        if target.is_dir():
            shutil.rmtree(target)
    for archive in staged.glob("lib/python3.11/config-3.11-*/libpython3.11.a"):
        archive.unlink()
    for cache in sorted(staged.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    (staged / "bin" / "python").symlink_to("python3.11")


def _bundle_libraries(staged: Path) -> None:
    """Copy the shared libraries the interpreter's modules link (not glibc) into ``lib/``."""
    lib = staged / "lib"
    for name in _BUNDLED_LIBRARIES:
        for directory in (Path("/lib/x86_64-linux-gnu"), Path("/usr/lib/x86_64-linux-gnu")):
            if (directory / name).exists():
                shutil.copyfile((directory / name).resolve(), lib / name)
                os.chmod(lib / name, 0o755)
                break
        else:
            raise RuntimeError(f"{name} is not on this machine: install its Debian package to build CPython")


def _debian_version(root: Path, options: list[str]) -> str:
    """The Debian version of the source package whose orig tarball is VERSION."""
    shown = subprocess.run(
        ["apt-cache", *options, "showsrc", SOURCE_PACKAGE], capture_output=True, text=True, check=True
    ).stdout
    versions = [line.split(":", 1)[1].strip() for line in shown.splitlines() if line.startswith("Version:")]
    for version in versions:
        if version.startswith(f"{VERSION}-"):
            return version
    raise RuntimeError(f"no Debian source of {SOURCE_PACKAGE} {VERSION} (found {versions})")


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({result.returncode}):\n{result.stderr[-4000:]}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
