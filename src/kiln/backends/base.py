"""The Builder protocol: probe a base image, build an image; the values a build hands back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """The build options that shape the image, recorded in its provenance (oci)."""


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
class PlatformBuilt:
    """One platform's image of a build (oci): its platform, config and manifest digests, attachments."""

    platform: str
    image_id: str
    digest: str
    attached: tuple[str, ...] = ()
    """Digests of the artifact manifests that refer to it (its SBOM, its provenance)."""


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
    platforms: tuple[PlatformBuilt, ...] = ()
    """Each platform's image (oci). With several, ``digest`` is their image index's and ``image_id``
    the host platform's (the one ``--output docker`` loads), else the first's."""
    sbom: str | None = None
    """Where the SBOM is in the image (oci)."""

    @property
    def in_docker(self) -> bool:
        """True when the image is in the Docker engine (built there, or loaded with ``--output docker``)."""
        return self.builder != "oci" or any(p.target == "docker" for p in self.published)


@runtime_checkable
class PlatformsBuilder(Protocol):
    """A builder that makes one image for several platforms: an image per request, then their index."""

    def build_platforms(self, requests: Sequence[BuildRequest], progress: Progress) -> BuiltImage:
        """Build each request (one platform each), then publish the index of their images."""
        ...


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
