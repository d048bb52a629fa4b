"""Checks the runtime makes before starting workers, so a bad start fails fast and clearly."""

from __future__ import annotations

from kiln.model.info import ModelInfo, read_model_info
from kiln.runtime.settings import RuntimeSettings


def check_model(settings: RuntimeSettings) -> ModelInfo:
    """The model at ``settings.model_dir`` is a pyfunc model, or a ModelError says why not."""
    return read_model_info(settings.model_dir)
