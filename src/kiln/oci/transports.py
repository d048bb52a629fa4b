"""Image locations on disk in skopeo's transport syntax: ``oci:DIR[:TAG]`` and ``docker-archive:PATH[:REF]``.

One reading serves both directions: a base image read from a location (which must exist; paths
may hold colons, so the longest existing prefix is the path) and an output written to one (which
need not exist yet; a last ``:TAG`` without a ``/`` names the image inside a layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiln.errors import UsageError

Transport = Literal["oci", "docker-archive"]
TRANSPORTS: tuple[Transport, ...] = ("oci", "docker-archive")


@dataclass(frozen=True)
class Location:
    """An image layout directory or archive file, and the name of one image in it."""

    transport: Transport
    path: Path
    ref: str | None = None
    """``oci:DIR:TAG``'s TAG, ``docker-archive:PATH:REF``'s REF; None: the only (or default) image."""

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.ref}" if self.ref else "")


def split_transport(text: str) -> tuple[Transport, str] | None:
    """``(transport, rest)`` when ``text`` starts with ``oci:`` or ``docker-archive:``, else None."""
    for transport in TRANSPORTS:
        if text.startswith(f"{transport}:"):
            return transport, text[len(transport) + 1 :]
    return None


def existing_location(text: str) -> Location | None:
    """A location to read from; UsageError when nothing exists at its path. None: not a path transport."""
    split = split_transport(text)
    if split is None:
        return None
    transport, rest = split
    whole = Path(rest).expanduser()
    if rest and whole.exists():
        return Location(transport, whole)
    head, sep, _ = rest.rpartition(":")
    while sep:
        candidate = Path(head).expanduser()
        if head and candidate.exists():
            return Location(transport, candidate, rest[len(head) + 1 :])
        head, sep, _ = head.rpartition(":")
    kind = "directory" if transport == "oci" else "file"
    raise UsageError(f"base image {text!r}: no such {kind} {rest!r}")


def new_location(text: str) -> Location | None:
    """A location to write to (made absolute); None when ``text`` is not ``oci:DIR[:TAG]`` or
    ``docker-archive:FILE`` with a path."""
    split = split_transport(text)
    if split is None or not split[1]:
        return None
    transport, rest = split
    if transport == "oci":
        directory, colon, ref = rest.rpartition(":")
        if colon and directory and ref and "/" not in ref and not Path(rest).exists():
            return Location("oci", Path(directory).expanduser().absolute(), ref)
    return Location(transport, Path(rest).expanduser().absolute())
