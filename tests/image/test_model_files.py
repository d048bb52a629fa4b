"""The model's environment files reach the image without the credentials their URLs carry, and the
SBOM hashes what the image holds."""

from __future__ import annotations

import hashlib
from pathlib import Path

from kiln.image.model_files import copy_model
from kiln.image.supply.attach import model_files

TOKEN = "kiln-model-secret-token"


def _model(root: Path) -> Path:
    model = root / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "requirements.txt").write_text(
        f"--extra-index-url https://__token__:{TOKEN}@pypi.example.com/simple\nscikit-learn==1.5.0\n"
    )
    (model / "conda.yaml").write_text(
        f"channels:\n- https://conda.example.com/t/{TOKEN}/kiln\n- conda-forge\n"
        "dependencies:\n- python=3.11\n"
    )
    (model / "notes.txt").write_text("see https://user:not-an-env-file@example.com\n")  # not scrubbed
    return model


def test_credentials_in_the_models_environment_files_are_replaced(tmp_path: Path) -> None:
    model = _model(tmp_path)
    copy = tmp_path / "copy"
    copy_model(model, copy)
    assert (copy / "requirements.txt").read_text() == (
        "--extra-index-url https://****@pypi.example.com/simple\nscikit-learn==1.5.0\n"
    )
    assert "https://conda.example.com/t/****/kiln" in (copy / "conda.yaml").read_text()
    assert not any(TOKEN in path.read_text() for path in copy.iterdir())
    assert (copy / "notes.txt").read_bytes() == (model / "notes.txt").read_bytes()
    assert (model / "requirements.txt").read_text().count(TOKEN) == 1  # the user's model is untouched


def test_the_sbom_hashes_of_the_source_are_those_of_the_copy(tmp_path: Path) -> None:
    model = _model(tmp_path)
    copy = tmp_path / "copy"
    copy_model(model, copy)
    from_source = {f.path: f.sha256 for f in model_files(model, "/opt/ml/model")}
    in_image = {f"/opt/ml/model/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in copy.iterdir()}
    assert from_source == in_image
