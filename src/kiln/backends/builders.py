"""The builders by name: ``--backend docker`` and ``--backend oci``."""

from __future__ import annotations

from collections.abc import Callable

from kiln.backends.base import Builder
from kiln.backends.docker.builder import DockerBuilder
from kiln.backends.oci import OciBuilder
from kiln.errors import UsageError

BUILDERS: dict[str, Callable[[], Builder]] = {"docker": DockerBuilder.connect, "oci": OciBuilder}
"""Builder implementations by name; each factory fails fast when its engine is unreachable."""


def get_builder(name: str = "docker") -> Builder:
    """The builder named ``name``; UsageError naming the known ones for anything else."""
    try:
        factory = BUILDERS[name]
    except KeyError:
        raise UsageError(
            f"unknown backend {name!r} (expected one of {', '.join(sorted(BUILDERS))})"
        ) from None
    return factory()
