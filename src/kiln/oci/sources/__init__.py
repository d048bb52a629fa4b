"""Base images for ``--backend oci``, named with skopeo's transports: an archive, a layout or a registry.

- ``docker-archive:PATH[:REF]``: a ``docker save`` tarball (``archive.py``);
- ``oci:DIR[:TAG]``: an OCI image layout (``layout.py``);
- anything else (``docker://REF`` or a plain ``REGISTRY/REPO:TAG``): a registry (``registry.py``).

Every base is pinned by a manifest digest, recorded in the image's
``org.opencontainers.image.base.digest`` annotation and label.
"""

from __future__ import annotations

from kiln.errors import UsageError
from kiln.oci.blobstore import BlobStore
from kiln.oci.sources.archive import open_docker_archive
from kiln.oci.sources.base import BaseImage, host_os_arch
from kiln.oci.sources.layout import open_oci_layout
from kiln.oci.sources.registry import fetch_layers, open_registry_base
from kiln.oci.transports import split_transport

UNSUPPORTED_TRANSPORTS = ("oci-archive:", "docker-daemon:", "dir:", "containers-storage:", "ostree:", "sif:")


def open_base(reference: str, *, platform: str | None, store: BlobStore) -> BaseImage:
    """Resolve ``--base-image`` (any transport) and index its filesystem."""
    for prefix in UNSUPPORTED_TRANSPORTS:
        if reference.startswith(prefix):
            raise UsageError(
                f"base image {reference!r}: the {prefix[:-1]} transport is not supported by --backend oci "
                "(expected docker-archive:PATH, oci:DIR[:TAG], or a registry reference REGISTRY/REPO:TAG)",
                hint="for an image in the local Docker engine: docker save IMAGE -o base.tar, then "
                "--base-image docker-archive:base.tar",
            )
    split = split_transport(reference)
    if split is not None:
        opener = open_oci_layout if split[0] == "oci" else open_docker_archive
        return opener(reference, platform, store)
    return open_registry_base(reference.removeprefix("docker://"), reference, platform, store)


__all__ = ["BaseImage", "fetch_layers", "host_os_arch", "open_base"]
