"""What every base-image source gives: a pinned BaseImage, its config checked, its index cache."""

from __future__ import annotations

import json
import platform as host_platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.errors import BuildError
from kiln.oci.basefs import LayerFiles
from kiln.oci.blobstore import BlobStore, hex_of
from kiln.oci.types import (
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_TAR,
    Blob,
)

_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
LAYER_TYPES = {
    MEDIA_DOCKER_LAYER_GZIP: MEDIA_OCI_LAYER_GZIP,
    _DOCKER_LAYER_TAR: MEDIA_OCI_LAYER_TAR,
    MEDIA_OCI_LAYER_GZIP: MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_TAR: MEDIA_OCI_LAYER_TAR,
}
"""Layer media types a base may use, and the OCI type kiln writes for each."""
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class BaseImage:
    """A base image resolved and pinned: its config, its layers as blobs, its filesystem."""

    reference: str
    """What ``--base-image`` said."""
    name: str
    """A transport-free name for ``org.opencontainers.image.base.name`` ("" when it has none)."""
    digest: str
    """The manifest digest that pins it."""
    config: Mapping[str, Any]
    config_digest: str
    layers: tuple[Blob, ...]
    files: LayerFiles = field(repr=False)
    remote: Any = field(default=None, repr=False)
    """The registry's RemoteBase, for a registry base (its layers have no local path)."""

    @property
    def platform(self) -> dict[str, str]:
        found = {
            "os": str(self.config.get("os", "linux")),
            "architecture": str(self.config.get("architecture")),
        }
        if self.config.get("variant"):
            found["variant"] = str(self.config["variant"])
        return found

    @property
    def os_arch(self) -> str:
        return "/".join(self.platform.get(key, "") for key in ("os", "architecture", "variant")).rstrip("/")


def host_os_arch() -> str:
    """This machine as ``linux/ARCH`` in OCI's names (``linux/amd64``, ``linux/arm64``)."""
    return "linux/" + _ARCH.get(host_platform.machine().lower(), host_platform.machine().lower())


def checked_config(
    data: bytes, reference: str, platform: str | None, *, layers: int
) -> tuple[dict[str, Any], list[str]]:
    """The parsed config and its diff ids; BuildError unless it is an image config for ``platform``
    whose diff ids match the manifest's ``layers``."""
    try:
        config = json.loads(data)
        diff_ids = [str(d) for d in config["rootfs"]["diff_ids"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildError(
            f"base image {reference!r}: its config is not an image config with rootfs.diff_ids"
        ) from exc
    if platform:
        have = "/".join(str(config.get(k)) for k in ("os", "architecture") if config.get(k))
        if have and have != "/".join(platform.split("/")[:2]):
            raise BuildError(
                f"base image {reference!r} is for {have}, not --platform {platform}",
                hint="pass the base image's platform, or a base image built for yours",
            )
    if len(diff_ids) != layers:
        raise BuildError(
            f"base image {reference!r}: its manifest lists {layers} layers, its config {len(diff_ids)}"
        )
    return dict(config), diff_ids


def base_cache(store: BlobStore, config_digest: str) -> Path:
    return store.root / "bases" / hex_of(config_digest)
