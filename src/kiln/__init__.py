"""kiln: package MLflow models into fast, small, reproducible container images.

The public API is what ``__all__`` lists: ``build`` and ``generate_dockerfile`` (keyword options, as
the CLI names them), ``build_image`` and ``write_dockerfile`` (the frozen ``BuildOptions`` and
``GenerateOptions``), ``BuildResult``, and the error tree rooted at ``KilnError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiln.errors import (
    BuildError,
    DependencyError,
    DockerUnavailableError,
    KilnError,
    ModelError,
    ModelURIError,
    RegistryError,
    ScoringError,
    ServeError,
    UsageError,
)
from kiln.version import __version__

if TYPE_CHECKING:
    from kiln.api import (
        BuildOptions,
        BuildResult,
        GenerateOptions,
        build,
        build_image,
        generate_dockerfile,
        write_dockerfile,
    )

_FROM_API = frozenset(
    {
        "BuildOptions",
        "BuildResult",
        "GenerateOptions",
        "build",
        "build_image",
        "generate_dockerfile",
        "write_dockerfile",
    }
)
"""Loaded on first use: the runtime imports ``kiln`` inside images, where the builder's dependencies
are absent."""

__all__ = [
    "BuildError",
    "BuildOptions",
    "BuildResult",
    "DependencyError",
    "DockerUnavailableError",
    "GenerateOptions",
    "KilnError",
    "ModelError",
    "ModelURIError",
    "RegistryError",
    "ScoringError",
    "ServeError",
    "UsageError",
    "__version__",
    "build",
    "build_image",
    "generate_dockerfile",
    "write_dockerfile",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_API:
        from kiln import api

        return getattr(api, name)
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _FROM_API)
