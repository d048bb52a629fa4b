"""kiln's version: one definition, importable by the runtime half without the builder's packages."""

from __future__ import annotations

__version__ = "0.1.0"
