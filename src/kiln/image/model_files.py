"""The model's files as they go into an image: checked (no link out of the model, no special files),
modes normalised, owned by root. Both backends put this copy in the model layer."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from kiln.errors import ModelError


def copy_model(source: Path, dest: Path) -> None:
    """Copy a model directory, refusing symlinks that leave it and special files.

    Directories become 0755 and files 0644 (0755 when executable), so the image's
    runtime user can read but not change the model whatever the host's umask was.
    """
    root = source.resolve()
    if not root.is_dir():
        raise ModelError(f"model directory {str(source)!r} does not exist or is not a directory")
    dest.mkdir(parents=True)
    for current, dirnames, filenames in os.walk(root):
        here = Path(current)
        target_dir = dest / here.relative_to(root)
        for name in sorted(dirnames + filenames):
            path = here / name
            target = target_dir / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                _copy_link(path, root, target, source)
                if name in dirnames:
                    dirnames.remove(name)  # a linked directory stays a link; don't walk it twice
            elif stat.S_ISDIR(mode):
                target.mkdir()
                target.chmod(0o755)
            elif stat.S_ISREG(mode):
                _copy_file(path, target, mode)
            else:
                raise ModelError(
                    f"model directory {str(source)!r} contains {path} which is not a regular file, "
                    "directory or symlink (a socket, pipe or device cannot go into an image)"
                )
    dest.chmod(0o755)


def _copy_link(path: Path, root: Path, target: Path, source: Path) -> None:
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ModelError(
            f"model directory {str(source)!r} contains a symlink {path} -> {os.readlink(path)} "
            f"that cannot be followed: {exc}"
        ) from exc
    if not _is_under(resolved, root):
        raise ModelError(
            f"model directory {str(source)!r} contains a symlink {path} -> {os.readlink(path)} "
            "that points outside the model directory",
            hint="copy the file into the model directory, or replace the link with the file itself",
        )
    if not resolved.exists():
        raise ModelError(f"model directory {str(source)!r} contains a broken symlink {path}")
    # Relative links keep working after the copy; absolute ones would point at the host's path.
    target.symlink_to(os.path.relpath(resolved, path.parent))


def _copy_file(path: Path, target: Path, mode: int) -> None:
    try:
        shutil.copyfile(path, target)
    except PermissionError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    target.chmod(0o755 if mode & 0o111 else 0o644)


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
