"""ModelInfo: what kiln needs to know about a local MLflow model directory, read without MLflow."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kiln.errors import ModelError

PYFUNC = "python_function"


@dataclass(frozen=True)
class ModelInfo:
    """A local MLflow model directory with a ``python_function`` flavour, as read from MLmodel."""

    path: Path
    flavors: tuple[str, ...]
    loader_module: str | None
    python_version: str | None
    """From the pyfunc flavour, e.g. ``3.11.7``; None for very old models."""
    python_env_file: str | None
    conda_env_file: str | None
    requirements_file: str | None
    mlflow_version: str | None
    run_id: str | None = None
    model_uuid: str | None = None
    signature: dict[str, str] | None = None
    """The raw signature: ``inputs``, ``outputs``, ``params`` as JSON strings."""
    input_example_file: str | None = None
    serving_input_example_file: str | None = None
    mlmodel: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def python_minor(self) -> str | None:
        """``3.11`` for ``3.11.7``."""
        if not self.python_version:
            return None
        return ".".join(self.python_version.split(".")[:2])


def read_model_info(path: str | Path) -> ModelInfo:
    """Read ``path/MLmodel``; raise ModelError naming the path and what is missing."""
    root = Path(path)
    if not root.exists():
        raise ModelError(f"model directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise ModelError(f"model path {str(root)!r} is not a directory (expected an MLflow model directory)")
    mlmodel_path = root / "MLmodel"
    if not mlmodel_path.is_file():
        raise ModelError(
            f"{str(root)!r} is not an MLflow model: it has no MLmodel file",
            hint="pass the directory that mlflow.<flavor>.save_model wrote "
            "or the artifact path of a logged model",
        )
    try:
        mlmodel = yaml.safe_load(mlmodel_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelError(f"{str(mlmodel_path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(mlmodel, dict):
        raise ModelError(f"{str(mlmodel_path)!r} is not an MLmodel file (expected a YAML mapping)")
    flavors = mlmodel.get("flavors") or {}
    if not isinstance(flavors, dict):
        raise ModelError(f"{str(mlmodel_path)!r} has a malformed 'flavors' section (expected a mapping)")
    pyfunc = flavors.get(PYFUNC)
    if not isinstance(pyfunc, dict):
        names = ", ".join(sorted(flavors)) or "none"
        raise ModelError(
            f"model {str(root)!r} has no '{PYFUNC}' flavour (its flavours: {names}); "
            "only python_function models can be served"
        )
    env = pyfunc.get("env")
    python_env_file = conda_env_file = None
    if isinstance(env, dict):
        python_env_file = env.get("virtualenv")
        conda_env_file = env.get("conda")
    elif isinstance(env, str):  # MLflow < 2.0 wrote a single conda file name
        conda_env_file = env
    requirements = "requirements.txt" if (root / "requirements.txt").is_file() else None
    example = mlmodel.get("saved_input_example_info") or {}
    serving_example = (
        "serving_input_example.json" if (root / "serving_input_example.json").is_file() else None
    )
    signature = mlmodel.get("signature")
    return ModelInfo(
        path=root,
        flavors=tuple(sorted(flavors)),
        loader_module=pyfunc.get("loader_module"),
        python_version=_str_or_none(pyfunc.get("python_version")),
        python_env_file=python_env_file,
        conda_env_file=conda_env_file,
        requirements_file=requirements,
        mlflow_version=_str_or_none(mlmodel.get("mlflow_version")),
        run_id=_str_or_none(mlmodel.get("run_id")),
        model_uuid=_str_or_none(mlmodel.get("model_uuid")),
        signature=signature if isinstance(signature, dict) else None,
        input_example_file=example.get("artifact_path") if isinstance(example, dict) else None,
        serving_input_example_file=serving_example,
        mlmodel=mlmodel,
    )


def signature_summary(info: ModelInfo) -> str | None:
    """The signature as compact JSON (for an image label), or None."""
    if not info.signature:
        return None
    parts = {k: json.loads(v) if isinstance(v, str) else v for k, v in info.signature.items() if v}
    return json.dumps(parts, separators=(",", ":"), sort_keys=True)


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
