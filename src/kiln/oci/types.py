"""The values the OCI writer, the image sources and the registry client pass each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_MEDIA_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
INDEX_MEDIA_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST_LIST)

ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name"
ANNOTATION_BASE_DIGEST = "org.opencontainers.image.base.digest"
"""The annotations (and labels) that pin an image to the base it was built on."""


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says about one blob."""

    media_type: str
    digest: str
    """``sha256:<64 hex>`` of the bytes as stored (compressed, for layers)."""
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations))
        return out


@dataclass(frozen=True)
class Blob:
    """One blob of an image and where its bytes can be had.

    ``path`` is a local file holding exactly the blob's bytes; it is None for a base layer
    that lives only in a registry (``source``), which kiln never downloads to re-upload:
    a push to the same registry mounts it from ``source`` or finds it already there.
    """

    descriptor: Descriptor
    path: Path | None = None
    source: str | None = None
    """``registry/repository`` the blob can be mounted or fetched from, when it came from one."""
    diff_id: str | None = None
    """Layers only: ``sha256:`` of the uncompressed tar (the config's ``rootfs.diff_ids``)."""

    @property
    def digest(self) -> str:
        return self.descriptor.digest


@dataclass(frozen=True)
class Image:
    """A complete single-platform image: manifest bytes (canonical JSON), its config and layers."""

    manifest: bytes
    manifest_descriptor: Descriptor
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def digest(self) -> str:
        """The manifest digest: what ``docker pull REPO@DIGEST`` and registries know the image by."""
        return self.manifest_descriptor.digest

    @property
    def image_id(self) -> str:
        """The config digest: what ``docker images`` shows as IMAGE ID."""
        return self.config.digest

    def blobs(self) -> tuple[Blob, ...]:
        """Every blob a registry needs before the manifest: layers (base first), then the config."""
        return (*self.layers, self.config)


class BaseFiles(Protocol):
    """Read-only view of a base image's merged filesystem (its layers applied in order, whiteouts honoured).

    Paths are absolute POSIX paths inside the image (``/etc/os-release``). Implemented from
    the base's layer tars; used to probe the base without running it, to resolve system
    packages against its dpkg database, and to keep the base's modes on parent directories.
    """

    def read(self, path: str) -> bytes | None:
        """The bytes of the regular file at ``path`` (symlinks followed inside the image), or None."""
        ...

    def entry(self, path: str) -> FileEntry | None:
        """What is at ``path`` (not following a final symlink), or None when nothing is."""
        ...


@dataclass(frozen=True)
class FileEntry:
    """One path of a base image's filesystem, as its layer tar header gave it."""

    path: str
    kind: Literal["file", "dir", "symlink", "hardlink", "other"]
    mode: int
    """Permission bits including setuid/setgid/sticky (``0o1777`` for /tmp)."""
    uid: int = 0
    gid: int = 0
    target: str | None = None
    """Symlink or hardlink target."""
