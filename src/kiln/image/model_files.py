"""The model's files as they go into an image: checked (no link out of the model, no special files),
modes normalised, owned by root, and laid out in layers.

``plan_model_layout`` decides once, for both backends, which files get an image layer of their own:
every regular file of ``LARGE_FILE_SIZE`` or more (weights, checkpoints), by path. The rest of the
model is one layer, the last. A registry client pulls and pushes layers in parallel, and a change
to a small file (``MLmodel``, a tokenizer) re-sends only the small-files layer. The large files
are never copied: ``place_large_files`` hard-links them where a backend reads them.

The model's environment files (``requirements.txt``, ``conda.yaml``...) may name a private index
or channel with its credentials (``--extra-index-url https://user:token@host/simple``, an
anaconda.org ``/t/<token>/`` path). kiln uses them on the host; the image's copy has them replaced
by ``****`` (``image_content``), and the SBOM hashes what the image holds.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from kiln.env.conda.errors import redact_channel_text
from kiln.errors import ModelError

log = logging.getLogger(__name__)

LARGE_FILE_SIZE = 64 * 1024 * 1024
"""A model file of this many bytes or more gets a layer of its own (64 MiB)."""

ENVIRONMENT_FILES = frozenset({"requirements.txt", "constraints.txt", "conda.yaml", "python_env.yaml"})
"""The model's environment files (at its top level): the image gets them without credentials."""

_UNSAFE = re.compile(r'[\x00-\x1f\x7f\\"$*?\[\]]')
"""Characters a Dockerfile COPY would glob or expand (and control characters): a file whose path
has one stays in the small-files layer, where the directory copy carries it untouched."""


@dataclass(frozen=True)
class LargeFile:
    """A model file with a layer of its own."""

    path: str
    """Relative POSIX path inside the model directory."""
    size: int
    mode: int
    """Its mode in the image: 0755 when the host file is executable, else 0644."""


@dataclass(frozen=True)
class ModelLayout:
    """Which model files get a layer each (sorted by path); everything else shares the last layer."""

    threshold: int = LARGE_FILE_SIZE
    large: tuple[LargeFile, ...] = ()

    @property
    def large_paths(self) -> frozenset[str]:
        return frozenset(item.path for item in self.large)


def plan_model_layout(model_dir: Path, threshold: int = LARGE_FILE_SIZE) -> ModelLayout:
    """The layout of ``model_dir``: from the files' sizes and paths only (nothing is read)."""
    root = model_dir.resolve()
    large: list[LargeFile] = []
    for current, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(current) / name
            info = path.lstat()
            relative = path.relative_to(root).as_posix()
            small = relative in ENVIRONMENT_FILES or _UNSAFE.search(relative)  # scrubbed, or a COPY glob
            if stat.S_ISREG(info.st_mode) and info.st_size >= threshold and not small:
                large.append(LargeFile(relative, info.st_size, _image_mode(info.st_mode)))
    return ModelLayout(threshold, tuple(sorted(large, key=lambda item: item.path)))


def place_large_files(source: Path, layout: ModelLayout, dest: Path, *, exact_modes: bool) -> int:
    """Put each of ``layout``'s large files at ``dest/<path>``: a hard link to the model's own file
    (no second copy of the weights), or a copy where no link can be made (another filesystem, a
    file the user may not link). ``exact_modes``: the reader keeps the host's mode (Docker's
    classic builder, which has no ``COPY --chmod``), so a file whose mode is not already the
    image's is copied and given it. Returns the bytes copied."""
    root = source.resolve()
    copied = 0
    for item in layout.large:
        path, target = root / item.path, dest / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (exact_modes and stat.S_IMODE(path.stat().st_mode) != item.mode):
            try:
                os.link(path, target)
                continue
            except OSError as exc:
                log.debug("cannot hard-link %s (%s): copying it", path, exc)
        _copy_file(path, target, item.mode, "")  # weights: not environment files
        copied += item.size
    if copied:
        log.info(
            "copied %d MiB of large model files rather than linking them (another filesystem, "
            "or a mode that only a copy can change)",
            copied >> 20,
        )
    return copied


def _image_mode(mode: int) -> int:
    return 0o755 if mode & 0o111 else 0o644


def copy_model(source: Path, dest: Path, *, skip: frozenset[str] = frozenset()) -> None:
    """Copy a model directory, refusing symlinks that leave it and special files.

    Directories become 0755 and files 0644 (0755 when executable), so the image's
    runtime user can read but not change the model whatever the host's umask was.
    ``skip``: relative paths of files left out (the large files, placed by ``place_large_files``).
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
            if path.relative_to(root).as_posix() in skip:
                continue
            if stat.S_ISLNK(mode):
                _copy_link(path, root, target, source)
                if name in dirnames:
                    dirnames.remove(name)  # a linked directory stays a link; don't walk it twice
            elif stat.S_ISDIR(mode):
                target.mkdir()
                target.chmod(0o755)
            elif stat.S_ISREG(mode):
                _copy_file(path, target, mode, path.relative_to(root).as_posix())
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


def image_content(relative: str, data: bytes) -> bytes | None:
    """What the image holds for the model file at ``relative`` with content ``data``: None when that
    is ``data`` itself, else the file with the credentials in its URLs replaced by ``****``."""
    if relative not in ENVIRONMENT_FILES:
        return None
    text = data.decode("utf-8", "surrogateescape")
    clean = redact_channel_text(text)
    return None if clean == text else clean.encode("utf-8", "surrogateescape")


def _copy_file(path: Path, target: Path, mode: int, relative: str) -> None:
    try:
        shutil.copyfile(path, target)
        scrubbed = image_content(relative, target.read_bytes()) if relative in ENVIRONMENT_FILES else None
    except PermissionError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    if scrubbed is not None:
        target.write_bytes(scrubbed)
        log.warning(
            "the model's %s names an index or channel with credentials: kiln used them on the host; "
            "the image's copy has them replaced by ****",
            relative,
        )
    target.chmod(_image_mode(mode))


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
