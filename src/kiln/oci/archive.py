"""``--output docker-archive:FILE``: one tar that ``docker load`` (and ``skopeo``) read.

The tar holds both formats at once, as ``docker save`` does since Docker 25: an OCI image
layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``) and Docker's ``manifest.json``
naming the config, the layers (gzipped; ``docker load`` decompresses them) and the repo
tag. Entries are sorted with fixed owners, modes and times, so the same image always
gives the same bytes. ``write_archive`` streams to any file object: a file written
atomically (``save_archive``) or ``docker load``'s stdin.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, BinaryIO

from kiln.oci.blobstore import hex_of
from kiln.oci.canonical import canonical_json
from kiln.oci.index import index_json
from kiln.oci.layout import LAYOUT_VERSION, index_entry
from kiln.oci.types import Image


def repo_tag(name: str) -> str:
    """``name`` with ``:latest`` when it has no tag (``docker load`` wants ``REPO:TAG``)."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def docker_manifest(image: Image, tag: str) -> bytes:
    """Docker's ``manifest.json`` for a single image whose blobs are under ``blobs/sha256``."""
    return canonical_json(
        [
            {
                "Config": f"blobs/sha256/{hex_of(image.config.digest)}",
                "RepoTags": [repo_tag(tag)],
                "Layers": [f"blobs/sha256/{hex_of(layer.digest)}" for layer in image.layers],
            }
        ]
    )


def write_archive(
    image: Image, out: IO[bytes], *, tag: str, platform: Mapping[str, str], epoch: int = 0
) -> None:
    """Stream the archive of ``image`` (every blob with a local path) into ``out``."""
    name = repo_tag(tag)
    ref = name.rsplit(":", 1)[1]
    blobs: dict[str, Path | bytes] = {hex_of(image.digest): image.manifest}
    for blob in image.blobs():
        if blob.path is None:
            raise ValueError(f"blob {blob.digest} has no local copy to write into an archive")
        blobs[hex_of(blob.digest)] = blob.path
    files: dict[str, Path | bytes] = {f"blobs/sha256/{h}": source for h, source in blobs.items()}
    files["index.json"] = index_json([index_entry(image, ref_name=ref, image_name=name, platform=platform)])
    files["manifest.json"] = docker_manifest(image, tag)
    files["oci-layout"] = canonical_json(LAYOUT_VERSION)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(_info(directory, tarfile.DIRTYPE, 0o755, 0, epoch))
        for path in sorted(files):
            source = files[path]
            if isinstance(source, bytes):
                tar.addfile(_info(path, tarfile.REGTYPE, 0o644, len(source), epoch), io.BytesIO(source))
            else:
                with open(source, "rb") as handle:
                    size = os.fstat(handle.fileno()).st_size
                    tar.addfile(_info(path, tarfile.REGTYPE, 0o644, size, epoch), handle)


def _info(name: str, kind: bytes, mode: int, size: int, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def save_archive(image: Image, dest: Path, *, tag: str, platform: Mapping[str, str], epoch: int = 0) -> None:
    """Write the archive to ``dest`` through a temp file in the same directory and a rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write_archive(image, handle, tag=tag, platform=platform, epoch=epoch)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_member(archive: BinaryIO, name: str) -> bytes | None:
    """The bytes of member ``name`` of a tar, or None (used to read archives back in tests and sources)."""
    with tarfile.open(fileobj=archive, mode="r:") as tar:
        try:
            member = tar.getmember(name)
        except KeyError:
            return None
        handle = tar.extractfile(member)
        return handle.read() if handle is not None else None
