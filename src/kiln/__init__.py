"""kiln: package MLflow models into fast, small, reproducible container images."""

from __future__ import annotations

__version__ = "0.1.0"
