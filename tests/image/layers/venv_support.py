"""Helpers for the host-side installers' tests: a base's root filesystem as BaseFiles, a locked
environment's values, and running kiln's trees inside the base image (fixtures: venv_fixtures.py)."""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.docker_support import BASE_IMAGE

from kiln.env.spec import EnvSpec
from kiln.image.probe import BaseImageInfo
from kiln.image.spec import ImageSpec
from kiln.oci.basefs import DirectoryFiles, realpath
from kiln.oci.types import FileEntry


class RootDirectory(DirectoryFiles):
    """A base image's root filesystem unpacked on the host, listable like kiln's layer index."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, "/")

    def listdir(self, path: str) -> list[str]:
        real = realpath(self, path)
        host = self.root / real.lstrip("/") if real is not None else None
        if host is None or host.is_symlink() or not host.is_dir():
            return []
        return sorted(child.name for child in host.iterdir())


class Layered:
    """Files of ``upper`` over ``lower`` (a tree kiln wrote, seen on top of its base); paths under
    ``hidden`` are gone from ``lower`` (as whiteouts would make them)."""

    def __init__(self, lower: RootDirectory, upper: RootDirectory, hidden: tuple[str, ...] = ()) -> None:
        self.lower, self.upper, self.hidden = lower, upper, hidden

    def _gone(self, path: str) -> bool:
        return any(path == h or path.startswith(h.rstrip("/") + "/") for h in self.hidden)

    def entry(self, path: str) -> FileEntry | None:
        return self.upper.entry(path) or (None if self._gone(path) else self.lower.entry(path))

    def read(self, path: str) -> bytes | None:
        real = realpath(self, path) or path
        if self.upper.entry(real) is not None:
            return self.upper.read(real)
        return None if self._gone(real) else self.lower.read(real)

    def listdir(self, path: str) -> list[str]:
        lower = [] if self._gone(path) else self.lower.listdir(path)
        below = [name for name in lower if not self._gone(posixpath.join(path, name))]
        return sorted(set(below) | set(self.upper.listdir(path)))


@dataclass(frozen=True)
class IrisEnv:
    """The sklearn_iris model's real environment, locked and fetched for the base, and its spec."""

    model: Path
    env: EnvSpec
    spec: ImageSpec
    base: BaseImageInfo


def run_in_base(
    command: Sequence[str],
    *,
    mounts: Sequence[tuple[Path, str]] = (),
    user: str = f"{10001}:0",
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``docker run`` of the base image with host trees mounted read-only at image paths."""
    volumes = [arg for host, image in mounts for arg in ("-v", f"{host}:{image}:ro")]
    return subprocess.run(
        ["docker", "run", "--rm", "--user", user, "--network", "none", *volumes, BASE_IMAGE, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class LayeredImage:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.tags: list[str] = []

    def build(self, *trees: Path) -> str:
        context = self.work / f"context-{len(self.tags)}"
        context.mkdir()
        lines = [f"FROM {BASE_IMAGE}"]
        for index, tree in enumerate(trees):
            shutil.copytree(tree, context / f"tree{index}", symlinks=True)
            lines.append(f"COPY tree{index}/ /")
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        tag = f"kiln-test/oci-tree:{uuid.uuid4().hex[:10]}"
        self.tags.append(tag)
        built = subprocess.run(
            ["docker", "build", "--quiet", "--tag", tag, str(context)],
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},  # the classic builder: any docker CLI has it
            check=False,
        )
        assert built.returncode == 0, built.stderr
        return tag


def tree_listing(root: Path) -> dict[str, tuple[str, int, str]]:
    """``{relative path: (kind, mode, symlink target or sha of bytes)}`` of a tree, to compare two."""
    import hashlib

    found: dict[str, tuple[str, int, str]] = {}
    for current, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(current) / name
            relative = posixpath.join(Path(current).relative_to(root).as_posix(), name).removeprefix("./")
            info = path.lstat()
            if path.is_symlink():
                found[relative] = ("link", 0, os.readlink(path))
            elif path.is_dir():
                found[relative] = ("dir", info.st_mode & 0o7777, "")
            else:
                found[relative] = (
                    "file",
                    info.st_mode & 0o7777,
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                )
    return found


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=300)
