"""What a build starts from: the model (any MLflow URI, resolved for the build), or none, and requirements."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln import contract
from kiln.errors import UsageError
from kiln.model.info import ModelInfo
from kiln.model.resolve import ResolvedModel, resolve_model
from kiln.model.uri import strip_credentials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildInputs:
    """The resolved inputs of one build; the model directories live as long as the ``with`` block."""

    model: ModelInfo | None
    """The model baked into the image; None for a model-agnostic image."""
    env_from: ModelInfo | None
    """Model-agnostic images: a model whose environment the image gets."""
    model_uri: str | None
    """The model URI as given (credentials removed), for the image label."""
    requirements: tuple[Path, ...]
    model_labels: tuple[tuple[str, str], ...] = ()
    """``io.kiln.model.*`` labels saying what the URI resolved to (run id, name, version, source)."""


@contextlib.contextmanager
def build_inputs(
    model_uri: str | Path | None,
    *,
    env_manager: str,
    requirements: Sequence[str | Path] = (),
    env_from: str | Path | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> Iterator[BuildInputs]:
    """Check the options, then resolve ``model_uri``/``env_from`` (downloading remote models once)."""
    if env_manager not in contract.ENV_MANAGERS:
        raise UsageError(
            f"unknown env manager {env_manager!r} (expected one of {', '.join(contract.ENV_MANAGERS)})"
        )
    files = tuple(Path(p).absolute() for p in requirements)
    for path in files:
        if not path.is_file():
            raise UsageError(f"requirements file {str(path)!r} does not exist")
    if model_uri is not None and env_from is not None:
        raise UsageError(
            "--env-from is for model-agnostic images: pass either -m MODEL or --env-from, not both"
        )
    with contextlib.ExitStack() as stack:

        def resolve(uri: str | Path | None) -> ResolvedModel | None:
            if uri is None:
                return None
            return stack.enter_context(
                resolve_model(str(uri), tracking_uri=tracking_uri, registry_uri=registry_uri)
            )

        model, env_model = resolve(model_uri), resolve(env_from)
        if model is None and env_model is None and not files and env_manager != "conda":
            log.info("model-agnostic image without --requirements or --env-from: kiln's runtime only")
        labels = {k: strip_credentials(v) for k, v in model.labels().items()} if model else {}
        yield BuildInputs(
            model=model.info if model else None,
            env_from=env_model.info if env_model else None,
            model_uri=strip_credentials(str(model_uri)) if model_uri is not None else None,
            requirements=files,
            model_labels=tuple(labels.items()),
        )
