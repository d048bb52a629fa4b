"""Build the test conda channel once per machine: packages cached by their inputs, indexed by rattler.

``build_channel()`` returns a directory laid out as a conda channel::

    linux-64/python-3.11.2-h0_kiln.tar.bz2       CPython, relocatable (cpython.py)
    linux-64/kiln-probe-1.0.0-py311_0.tar.bz2     native library with a binary placeholder (probe.py)
    linux-64/numpy-..., scipy-..., scikit-learn-..., pandas-...   manylinux wheels repackaged
    noarch/pip-..., joblib-..., threadpoolctl-..., six-..., ...    pure wheels repackaged (noarch: python)
    (the wheels as ``.conda``, CPython and kiln-probe as ``.tar.bz2``: both formats are exercised)
    */repodata.json                                   written by rattler's indexer (``index_fs``)

Each group of packages is cached under ``.cache/conda-channel/pkgs/<sha256 of its inputs>/``
(the builder's source, the pinned versions, the CPython tarball's sha256), so a change to
one builder rebuilds only its packages; a file lock lets parallel test sessions share the
work. ``KILN_CONDA_CHANNEL_CACHE`` moves the cache. ``python -m tests.conda_channel.build``
builds it and prints the time each part took.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conda_channel import cpython, probe, wheels
from tests.conda_channel.package import PackageMeta, write_package

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PYTHON_VERSION = cpython.VERSION
WHEEL_PINS = (
    "pip==26.3",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "scikit-learn==1.9.1",
    "joblib==1.6.0",
    "cloudpickle==3.1.3",
    "narwhals==2.29.0",
    "threadpoolctl==3.8.0",
    "pandas==3.1.1",
    "python-dateutil==2.9.0.post0",
    "six==1.17.0",
    "tzdata==2026.6",
)
"""The repackaged wheels: what a scikit-learn model needs, at the versions the tests save models with."""
SUBDIRS = ("linux-64", "noarch")
_HERE = Path(__file__).resolve().parent


def cache_dir() -> Path:
    explicit = os.environ.get("KILN_CONDA_CHANNEL_CACHE")
    return Path(explicit) if explicit else ROOT / ".cache" / "conda-channel"


def build_channel(report: Callable[[str], None] | None = None) -> Path:
    """The indexed channel directory, built (or taken from the cache) on first use."""
    say = report or logger.info
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        groups = {
            "python": _inputs("cpython.py", "package.py", "build.py", extra=cpython.ORIG_SHA256),
            "probe": _inputs("cpython.py", "package.py", "probe.py", "wheels.py", extra=cpython.ORIG_SHA256),
            "wheels": _inputs("package.py", "wheels.py", extra=repr(WHEEL_PINS)),
        }
        channel = root / f"channel-{_digest(*groups.values())[:16]}"
        if (channel / "noarch" / "repodata.json").is_file():
            return channel
        built = {name: root / "pkgs" / f"{name}-{key[:16]}" for name, key in groups.items()}
        _cached(built["python"], lambda out: _python(root, out), say, "CPython")
        _cached(built["probe"], lambda out: _probe(root, built["python"], out), say, "kiln-probe")
        _cached(built["wheels"], lambda out: _wheels(root, out), say, "repackaged wheels")
        _assemble(channel, built.values())
        _prune(root, keep={channel, *built.values()})
        say(f"indexed the test conda channel at {channel}")
        return channel


def staged_python(root: Path | None = None) -> Path:
    """The staged CPython of the last build (its headers compile extensions for the channel)."""
    return (root or cache_dir()) / "work" / "cpython" / "destdir" / cpython.PLACEHOLDER.lstrip("/")


def _python(root: Path, out: Path) -> None:
    # The compiled tree is kept apart from the package, so a change to package.py repacks it only.
    marker = root / "work" / f"cpython-{_inputs('cpython.py', extra=cpython.ORIG_SHA256)[:16]}.built"
    staged = staged_python(root)
    if not marker.is_file() or not staged.is_dir():
        tarball = cpython.fetch_source(root / "downloads")
        staged = cpython.build_cpython(tarball, root / "work" / "cpython")
        marker.write_text("")
    # The source and object files (hundreds of MB) are not needed once the install is staged.
    shutil.rmtree(root / "work" / "cpython" / f"Python-{cpython.VERSION}", ignore_errors=True)
    _compile_stdlib(staged)
    meta = PackageMeta(
        name="python", version=PYTHON_VERSION, build="h0_kiln", subdir="linux-64", license="PSF-2.0"
    )
    write_package(staged, meta, out, placeholder=cpython.PLACEHOLDER)


def _compile_stdlib(staged: Path) -> None:
    """The standard library's bytecode, as conda-forge's python ships it: a read-only container
    then never compiles it at start. unchecked-hash pycs name no mtime; paths are stored relative
    (the import system puts the real path in), and a pyc that would hold the build prefix
    (_sysconfigdata's) is dropped: a binary placeholder inside marshal data cannot be rewritten."""
    python = staged / "bin" / "python3.11"
    command = [
        str(python), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
        "-s", str(staged), "-p", "/", "-x", r"/(test|tests|idlelib|lib2to3)/",
        str(staged / "lib" / "python3.11"),
    ]  # fmt: skip
    subprocess.run(command, check=False, capture_output=True)
    needle = cpython.PLACEHOLDER.encode()
    for pyc in staged.rglob("*.pyc"):
        if needle in pyc.read_bytes():
            pyc.unlink()


def _probe(root: Path, python_packages: Path, out: Path) -> None:
    include = staged_python(root) / "include" / "python3.11"
    if not (include / "Python.h").is_file():  # the CPython build was cached elsewhere: unpack its headers
        include = _headers_from_package(python_packages, root / "work" / "headers")
    probe.build_probe(include, cpython.PLACEHOLDER, out, root / "work" / "probe")


def _wheels(root: Path, out: Path) -> None:
    downloaded = wheels.download_wheels(list(WHEEL_PINS), root / "downloads" / "wheels")
    known = {pin.split("==")[0] for pin in WHEEL_PINS} | {"python"}
    for wheel in downloaded:
        wheels.repackage(wheel, out, root / "work" / "wheels", known=known)
    shutil.rmtree(root / "work" / "wheels", ignore_errors=True)


def _headers_from_package(python_packages: Path, dest: Path) -> Path:
    import tarfile

    archive = next((python_packages / "linux-64").glob("python-*.tar.bz2"))
    if dest.exists():
        shutil.rmtree(dest)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("include/python3.11/")]
        tar.extractall(dest, members=members, filter="data")
    return dest / "include" / "python3.11"


def _cached(out: Path, build: Callable[[Path], None], say: Callable[[str], None], what: str) -> None:
    if (out / ".complete").is_file():
        return
    if out.exists():
        shutil.rmtree(out)
    started = time.monotonic()
    say(f"building {what} for the test conda channel (cached in {out})")
    build(out)
    (out / ".complete").write_text(f"{time.monotonic() - started:.1f}\n")
    say(f"built {what} in {time.monotonic() - started:.0f}s")


def _assemble(channel: Path, groups: object) -> None:
    import rattler

    temporary = channel.with_name(channel.name + ".tmp")
    if temporary.exists():
        shutil.rmtree(temporary)
    for subdir in SUBDIRS:
        (temporary / subdir).mkdir(parents=True)
    for group in groups:  # type: ignore[attr-defined]
        for package in sorted([*Path(group).glob("*/*.tar.bz2"), *Path(group).glob("*/*.conda")]):
            os.link(package, temporary / package.parent.name / package.name)
    asyncio.run(rattler.index.index_fs(temporary, write_zst=False, write_shards=False, force=True))
    if channel.exists():
        shutil.rmtree(channel)
    os.replace(temporary, channel)


def _prune(root: Path, keep: set[Path]) -> None:
    """Remove channels and package groups of earlier builder versions."""
    for stale in [*root.glob("channel-*"), *(root / "pkgs").glob("*")]:
        if stale.is_dir() and stale not in keep:
            shutil.rmtree(stale, ignore_errors=True)


def _inputs(*files: str, extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for name in files:
        digest.update((_HERE / name).read_bytes())
    return digest.hexdigest()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main() -> None:
    """Build, print the channel's path; exit without interpreter finalization, where a rattler
    worker thread was once seen to abort the process (PyGILState_Release) after a finished build."""
    started = time.monotonic()
    try:
        channel = build_channel(report=lambda line: print(line, file=sys.stderr, flush=True))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    print(channel, flush=True)
    print(f"{time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
