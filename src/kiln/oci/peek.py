"""Read one file out of a stored layer (a gzipped or plain tar) without unpacking the rest."""

from __future__ import annotations

import tarfile
from pathlib import Path


def read_layer_file(layer: Path, image_path: str) -> bytes | None:
    """The bytes of the regular file at ``image_path`` (``/var/lib/dpkg/status``) in the layer tar at
    ``layer``, or None when the layer does not hold it (one streaming pass, nothing extracted)."""
    wanted = image_path.strip("/")
    found: bytes | None = None
    with tarfile.open(layer, mode="r|*") as tar:
        for member in tar:
            name = member.name[2:] if member.name.startswith("./") else member.name
            if name.strip("/") != wanted:
                continue
            handle = tar.extractfile(member) if member.isfile() else None
            found = handle.read() if handle is not None else None
    return found
