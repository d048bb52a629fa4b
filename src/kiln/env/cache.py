"""kiln's user cache: finished locks and fetched wheels, shared safely between concurrent builds.

Layout under ``$KILN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/kiln`` or ``~/.cache/kiln``)::

    locks/<sha256 of the inputs>.lock          uv's lock for those inputs, reused as is
    wheels/<target key>/<sha256>/<file>.whl    wheels pip chose for that target, by content hash
    built/<sdist sha256>/<file>.whl            pure-Python wheels kiln built from sdists

Everything is written to a temporary name and renamed into place, so a reader never
sees half a file and two builds racing write the same bytes. Delete ``locks/`` to make
the next build resolve again (e.g. to pick up security releases).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from kiln.errors import DependencyError

CACHE_ENV = "KILN_CACHE_DIR"
_CHUNK = 1024 * 1024


def cache_root() -> Path:
    """Where kiln caches: ``$KILN_CACHE_DIR``, else ``$XDG_CACHE_HOME/kiln``, else ``~/.cache/kiln``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "kiln"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def store_file(source: Path, directory: Path, *, move: bool = False) -> Path:
    """Put ``source`` into ``directory`` (same file name) atomically; return the stored path.

    With ``move`` the source is renamed into place when it is on the same file system.
    """
    directory.mkdir(parents=True, exist_ok=True)
    destination = directory / source.name
    if destination.is_file():
        return destination
    if move:
        try:
            os.replace(source, destination)
            return destination
        except OSError:
            pass
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{source.name}.", suffix=".tmp")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return destination


def place(source: Path, destination: Path) -> None:
    """Put a cached file at ``destination``: a hard link when possible, else a copy."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.unlink(missing_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        try:
            shutil.copyfile(source, destination)
        except OSError as exc:
            raise DependencyError(f"cannot copy {str(source)!r} to {str(destination)!r}: {exc}") from exc
