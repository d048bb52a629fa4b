"""The Builder protocol: probe a base image, build an image; the values a build hands back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln.env.spec import EnvSpec
from kiln.image.probe import BaseImageInfo
from kiln.image.spec import ImageSpec
from kiln.progress import Progress


@dataclass(frozen=True)
class BuildRequest:
    """One image build: what goes into it, decided upstream, and its name. The same for every backend."""

    spec: ImageSpec
    env: EnvSpec
    tag: str
    work: Path
    """A scratch directory of this build's own (the Docker backend writes its build context there)."""
    model_dir: Path | None = None
    """The model to bake in (``spec.files.model`` says where it goes); None: model-agnostic."""
    python_dir: Path | None = None
    """A relocatable CPython fetched on the host, when ``spec.files.python`` bundles one."""
    no_cache: bool = False
    platform: str | None = None


@dataclass(frozen=True)
class Published:
    """Where a build put the image besides the builder's own store, and for a push what it sent."""

    target: str
    """``oci:DIR:TAG``, ``docker-archive:FILE``, ``docker`` or ``registry/repo:tag@sha256:...``."""
    pushed: bool = False
    uploaded: tuple[str, ...] = ()
    """Digests of the blobs sent (the rest were already there or mounted)."""
    reused: tuple[str, ...] = ()
    bytes_uploaded: int = 0
    seconds: float = 0.0


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
    published: tuple[Published, ...] = ()
    """Where the image was written or pushed (oci), in the order of ``--output`` then ``--push``."""

    @property
    def in_docker(self) -> bool:
        """True when the image is in the Docker engine (built there, or loaded with ``--output docker``)."""
        return self.builder != "oci" or any(p.target == "docker" for p in self.published)


class Builder(Protocol):
    """Who turns a BuildRequest into an image: the Docker engine, or kiln itself (oci)."""

    @property
    def buildkit(self) -> bool:
        """True when the spec may ask for BuildKit-only Dockerfile syntax (``RUN --mount``)."""
        ...

    def probe(self, image: str, *, platform: str | None = None) -> BaseImageInfo:
        """What ``image`` holds (Python, glibc, nginx, apt), cached by image id."""
        ...

    def build(self, request: BuildRequest, progress: Progress) -> BuiltImage:
        """Build the image ``request.spec`` describes; BuildError with the failing step's log tail."""
        ...
