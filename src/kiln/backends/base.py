"""The Builder protocol: probe a base image, build a context into an image. Implementations by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln.backends.progress import Progress
from kiln.errors import UsageError
from kiln.image.probe import BaseImageInfo


@dataclass(frozen=True)
class BuildRequest:
    """One image build: a context written by ``kiln.image.context`` and how to tag it."""

    context: Path
    tag: str
    no_cache: bool = False
    platform: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BuildStep:
    """A Dockerfile step as the builder reported it."""

    name: str
    cached: bool
    seconds: float | None = None


@dataclass(frozen=True)
class BuiltImage:
    """What a build produced."""

    tag: str
    image_id: str
    layers: tuple[str, ...]
    """The image's layer diff ids, base first."""
    steps: tuple[BuildStep, ...]
    builder: str
    """``buildkit`` or ``classic``."""
    seconds: float


class Builder(Protocol):
    """Who turns a build context into an image."""

    @property
    def buildkit(self) -> bool:
        """True when Dockerfiles may use BuildKit-only syntax (``RUN --mount``)."""
        ...

    def probe(self, image: str, *, platform: str | None = None) -> BaseImageInfo:
        """What ``image`` holds (Python, glibc, nginx, apt), cached by image id."""
        ...

    def build(self, request: BuildRequest, progress: Progress) -> BuiltImage:
        """Build ``request.context``; BuildError with the failing step's log tail on failure."""
        ...


def _docker() -> Builder:
    from kiln.backends.docker import DockerBuilder

    return DockerBuilder.connect()


BUILDERS: dict[str, Callable[[], Builder]] = {"docker": _docker}
"""Builder implementations by name; each factory fails fast when its engine is unreachable."""


def get_builder(name: str = "docker") -> Builder:
    try:
        factory = BUILDERS[name]
    except KeyError:
        raise UsageError(
            f"unknown builder {name!r} (expected one of {', '.join(sorted(BUILDERS))})"
        ) from None
    return factory()
