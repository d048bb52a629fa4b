"""Image references as Docker reads them: ``[registry/]repository[:tag][@digest]``."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from kiln.errors import UsageError

DOCKER_HUB = "registry-1.docker.io"
"""Where Docker Hub's registry API answers; ``docker.io`` and ``index.docker.io`` mean it."""
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", DOCKER_HUB})

# The grammar of github.com/distribution/reference, written out again.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_MAX_NAME = 255

_EXPECTED = (
    "expected [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST], "
    "e.g. 'python:3.11-slim' or '127.0.0.1:5000/team/model:1'"
)


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. ``registry`` is the host (and port) to contact."""

    registry: str
    """``127.0.0.1:5000``, ``ghcr.io``; Docker Hub is ``registry-1.docker.io``."""
    repository: str
    """``team/model``; a one-part Docker Hub name gets ``library/`` (``library/python``)."""
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``: what a ``Blob.source`` names."""
        return f"{self.registry}/{self.repository}"

    @property
    def target(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        """The same reference pinned to ``digest`` (the tag kept for display)."""
        return replace(self, digest=digest)

    def with_tag(self, tag: str | None) -> Reference:
        return replace(self, tag=tag)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse ``text`` the way ``docker pull`` does; a bare name gets the tag ``latest``.

    Raises UsageError naming the reference and what was wrong with it.
    """
    if not text or text != text.strip():
        raise UsageError(f"invalid image reference {text!r}: empty or surrounded by spaces; {_EXPECTED}")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise UsageError(
                f"invalid image reference {text!r}: digest {digest!r} is not "
                "'sha256:' followed by 64 lowercase hex digits"
            )
    registry, path = _split_registry(rest)
    tag = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise UsageError(
                f"invalid image reference {text!r}: tag {tag!r} must be 1-128 letters, digits, "
                "'_', '.' or '-', not starting with '.' or '-'"
            )
    if not path:
        raise UsageError(f"invalid image reference {text!r}: no repository name; {_EXPECTED}")
    _check_path(text, path)
    registry = registry or DOCKER_HUB
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if len(registry) + 1 + len(path) > _MAX_NAME:
        raise UsageError(f"invalid image reference {text!r}: the name is longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)


def _split_registry(rest: str) -> tuple[str, str]:
    """Docker's rule: the first part is a registry when it has a '.' or ':', is localhost, or has capitals."""
    first, sep, remainder = rest.partition("/")
    if not sep:
        return "", rest
    if "." in first or ":" in first or first == "localhost" or first != first.lower():
        if not _DOMAIN.fullmatch(first):
            raise UsageError(
                f"invalid image reference {rest!r}: registry {first!r} is not HOST[:PORT]; {_EXPECTED}"
            )
        return first, remainder
    return "", rest


def _check_path(text: str, path: str) -> None:
    if path != path.lower():
        raise UsageError(f"invalid image reference {text!r}: repository name {path!r} must be lowercase")
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise UsageError(
                f"invalid image reference {text!r}: repository part {component!r} must be lowercase letters "
                f"and digits, separated by '.', '_', '__' or '-'; {_EXPECTED}"
            )
