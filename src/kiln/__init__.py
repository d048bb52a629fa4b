"""kiln: package MLflow models into fast, small, reproducible container images."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kiln.version import __version__

if TYPE_CHECKING:
    from kiln.api import BuildResult, build, generate_dockerfile

__all__ = ["BuildResult", "__version__", "build", "generate_dockerfile"]


def __getattr__(name: str) -> Any:
    # Lazy: the runtime imports ``kiln`` inside images, where the builder's dependencies are absent.
    if name in ("build", "generate_dockerfile", "BuildResult"):
        from kiln import api

        return getattr(api, name)
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
