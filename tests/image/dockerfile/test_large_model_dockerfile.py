"""A model with large files: a COPY each in the Dockerfile (golden), hard links in the build context."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.image.conftest import MakeEnv, check_golden, python_slim
from tests.image.test_model_layout import MIB, sized

from kiln.image.base import plan_python
from kiln.image.dockerfile.context import write_context
from kiln.image.dockerfile.render import render_dockerfile
from kiln.image.spec import ImageOptions, ImageSpec, build_image_spec
from kiln.model.info import ModelInfo


def large_spec(make_env: MakeEnv, model: ModelInfo, *, buildkit: bool) -> ImageSpec:
    sized(model.path / "artifacts" / "encoder weights.bin", 2 * MIB, head=b"e")
    sized(model.path / "artifacts" / "decoder.safetensors", 3 * MIB, head=b"d")
    (model.path / "artifacts" / "decoder.safetensors").chmod(0o750)
    base = python_slim()
    env = make_env("virtualenv")
    options = ImageOptions(base_image=base.image, buildkit=buildkit, large_file_size=MIB)
    return build_image_spec(model, env, base, plan_python("virtualenv", "3.11", base), options)


@pytest.mark.parametrize("buildkit", [True, False], ids=["buildkit", "classic"])
def test_each_large_file_is_its_own_copy(make_env: MakeEnv, model: ModelInfo, buildkit: bool) -> None:
    spec = large_spec(make_env, model, buildkit=buildkit)
    text = render_dockerfile(spec)
    check_golden(f"virtualenv-large-model-{'buildkit' if buildkit else 'classic'}.Dockerfile", text)
    copies = [line for line in text.splitlines() if line.startswith("COPY") and "/opt/ml/model" in line]
    executable, plain = ("--chmod=0755 ", "--chmod=0644 ") if buildkit else ("", "")
    decoder, encoder = "artifacts/decoder.safetensors", "artifacts/encoder weights.bin"
    assert copies == [
        f'COPY {executable}["model-large/{decoder}", "/opt/ml/model/{decoder}"]',
        f'COPY {plain}["model-large/{encoder}", "/opt/ml/model/{encoder}"]',
        "COPY model /opt/ml/model",
    ]


def test_a_model_without_large_files_keeps_one_copy(make_env: MakeEnv, model: ModelInfo) -> None:
    base = python_slim()
    env = make_env("virtualenv")
    spec = build_image_spec(
        model, env, base, plan_python("virtualenv", "3.11", base), ImageOptions(base_image=base.image)
    )
    assert spec.model_layout.large == () and spec.files.large_model_files is None
    assert "model-large" not in render_dockerfile(spec)


@pytest.mark.parametrize("buildkit", [True, False], ids=["buildkit", "classic"])
def test_the_context_holds_no_second_copy(
    make_env: MakeEnv, model: ModelInfo, tmp_path: Path, buildkit: bool
) -> None:
    spec = large_spec(make_env, model, buildkit=buildkit)
    dest = tmp_path / "ctx"
    write_context(spec, make_env("virtualenv"), dest, model_dir=model.path)
    assert not (dest / "model" / "artifacts" / "decoder.safetensors").exists()
    for item in spec.model_layout.large:
        linked, original = (dest / "model-large" / item.path).stat(), (model.path / item.path).stat()
        # BuildKit's COPY --chmod gives 0750 its image mode; the classic builder needs a 0755 copy.
        same = buildkit or item.mode == original.st_mode & 0o777
        assert (linked.st_ino == original.st_ino) is same, item
    # New bytes written into the context: the small files (and, classic, the 3 MiB copy), never both files.
    written = sum(p.stat().st_blocks * 512 for p in dest.rglob("*") if p.is_file() and p.stat().st_nlink == 1)
    assert written < (4 * MIB if not buildkit else MIB)
