"""The Builder protocol: probe a base image, build an image; the values a build hands back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kiln.image.probe import BaseImageInfo
from kiln.progress import Progress

if TYPE_CHECKING:
    from kiln.env.spec import EnvSpec
    from kiln.image.spec import ImageSpec


@dataclass(frozen=True)
class BuildRequest:
    """One image build: a context written by ``kiln.image.dockerfile.context`` and how to tag it."""

    context: Path
    tag: str
    no_cache: bool = False
    platform: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    spec: ImageSpec | None = None
    """What the context's Dockerfile says, for builders that assemble the image themselves (oci)."""
    env: EnvSpec | None = None
    outputs: tuple[str, ...] = ()
    """``--output`` targets (``oci:DIR[:TAG]``, ``docker-archive:FILE``, ``docker``); oci only."""
    push: tuple[str, ...] = ()
    """``--push`` references (``REGISTRY/REPO:TAG``); oci only."""


@dataclass(frozen=True)
class PushedImage:
    """One ``--push``: where the image went and what had to be sent."""

    reference: str
    """``registry/repo:tag@sha256:...``"""
    uploaded: tuple[str, ...]
    """Digests of the blobs sent (the rest were already there or mounted)."""
    reused: tuple[str, ...]
    bytes_uploaded: int
    seconds: float


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
    """``buildkit``, ``classic`` or ``oci``."""
    seconds: float
    digest: str | None = None
    """The manifest digest, when the builder wrote the manifest itself (oci)."""
    outputs: tuple[str, ...] = ()
    """Where the image was written (oci): ``oci:DIR:TAG``, ``docker-archive:FILE``, ``docker``."""
    pushed: tuple[PushedImage, ...] = ()


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
