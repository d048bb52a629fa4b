"""CPU or CUDA variants: chosen from the model, swapped before the lock, undone when no index has them."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

from kiln.env.accelerators import choose_variants, cuda_libraries, detect
from kiln.env.lockfile import parse_lock
from kiln.env.locking import LockRequest
from kiln.env.mlflow_choice import MlflowChoice
from kiln.env.resolve import lock_variants, resolve_env
from kiln.env.spec import TargetPlatform
from tests.env.conftest import PackageIndex, pure_wheel

AMD64 = TargetPlatform("3.11", "linux/amd64", "2.36")


def reqs(*texts: str) -> tuple[Requirement, ...]:
    return tuple(Requirement(text) for text in texts)


@pytest.mark.parametrize(
    ("requirements", "expected"),
    [
        (("scikit-learn==1.5.2", "xgboost==3.0.5"), "cpu"),
        (("torch==2.5.1",), "cpu"),
        (("torch==2.5.1+cu121",), "cuda"),
        (("onnxruntime-gpu==1.20.0",), "cuda"),
        (("nvidia-cublas-cu12",), "cuda"),
        (("tensorflow[and-cuda]==2.17",), "cuda"),
        (("jax[cuda12]",), "cuda"),
        (("cupy-cuda12x",), "cuda"),
    ],
)
def test_the_default_accelerator_comes_from_the_models_requirements(
    requirements: tuple[str, ...], expected: str
) -> None:
    assert detect(reqs(*requirements)) == expected


def test_cpu_images_ask_for_cpu_variants() -> None:
    choice = choose_variants(reqs("xgboost==3.0.5", "onnxruntime-gpu>=1.18", "torch==2.5.1", "pandas"), "cpu")
    assert [str(r) for r in choice.requirements] == [
        "xgboost-cpu==3.0.5",
        "onnxruntime>=1.18",
        "torch==2.5.1+cpu",
        "pandas",
    ]
    assert choice.notes() == (
        "xgboost==3.0.5 -> xgboost-cpu==3.0.5 for a CPU image",
        "onnxruntime-gpu>=1.18 -> onnxruntime>=1.18 for a CPU image",
        "torch==2.5.1 -> torch==2.5.1+cpu for a CPU image",
    )
    undone = choice.without({"xgboost-cpu"})
    assert [str(r) for r in undone.requirements][:1] == ["xgboost==3.0.5"]
    assert len(undone.swaps) == 2


def test_what_is_not_one_exact_version_or_already_a_variant_is_kept() -> None:
    kept = reqs("torch>=2", "torch==2.5.1+cu121", "xgboost-cpu==3.0.5")
    assert choose_variants(kept, "cpu").requirements == kept
    assert choose_variants(reqs("xgboost", "xgboost-cpu"), "cpu").swaps == ()


def test_cuda_images_ask_for_cuda_variants() -> None:
    choice = choose_variants(reqs("xgboost-cpu==3.0.5", "onnxruntime==1.20.0", "torch==2.5.1"), "cuda")
    assert [str(r) for r in choice.requirements] == [
        "xgboost==3.0.5",
        "onnxruntime-gpu==1.20.0",
        "torch==2.5.1",
    ]


def test_cuda_libraries_are_found_in_a_lock() -> None:
    names = ["numpy", "nvidia-nccl-cu12", "nvidia_cublas_cu12", "triton", "xgboost"]
    assert cuda_libraries(names) == ("nvidia-cublas-cu12", "nvidia-nccl-cu12", "triton")


@pytest.fixture
def pytorch_like_index(package_index: PackageIndex, monkeypatch: pytest.MonkeyPatch) -> PackageIndex:
    """An index that, like PyTorch's, has a +cpu build of one version and only the plain build of another."""
    for version in ("0.0.1", "0.0.1+cpu", "0.0.2"):
        package_index.add("torch", *pure_wheel("torch", version, {"torch/__init__.py": f"V = {version!r}\n"}))
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", package_index.url())
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", package_index.url())
    return package_index


def test_a_cpu_build_on_the_index_is_locked_and_installed(
    pytorch_like_index: PackageIndex, tmp_path: Path, kiln_cache: Path
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("torch==0.0.1\n", encoding="utf-8")
    spec = resolve_env(
        None,
        env_manager="virtualenv",
        target=AMD64,
        work_dir=tmp_path / "ctx",
        requirements_files=[requirements],
    )
    locked = {e.name: e.version for e in parse_lock(spec.lock_file.read_text())}  # type: ignore[union-attr]
    assert locked["torch"] == "0.0.1+cpu"
    assert spec.accelerator == "cpu"
    assert "torch==0.0.1 -> torch==0.0.1+cpu for a CPU image" in spec.notes
    assert (spec.wheelhouse / "torch-0.0.1+cpu-py3-none-any.whl").is_file()  # type: ignore[operator]


def test_without_a_cpu_build_the_models_pin_is_kept_and_said(
    pytorch_like_index: PackageIndex, tmp_path: Path, kiln_cache: Path
) -> None:
    request = LockRequest(target=AMD64, requirements=(), runtime=())
    messages: list[str] = []
    locked, text, notes = lock_variants(
        request, MlflowChoice(reqs("torch==0.0.2")), "cpu", [], kiln_cache, messages.append
    )
    assert {e.name: e.version for e in parse_lock(text)}["torch"] == "0.0.2"
    assert locked.requirements == ("torch==0.0.2",)
    assert "torch: not on the configured indexes; kept the model's pin" in notes


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pin", "accelerator", "present", "absent"),
    [
        ("xgboost==3.0.5", "cpu", {"xgboost-cpu"}, {"xgboost", "nvidia-nccl-cu12"}),
        ("xgboost==3.0.5", "cuda", {"xgboost", "nvidia-nccl-cu12"}, {"xgboost-cpu"}),
        ("xgboost==2.1.0", "cpu", {"xgboost"}, {"xgboost-cpu"}),  # xgboost-cpu starts at 2.1.1
    ],
)
def test_xgboost_from_the_real_index(
    pin: str, accelerator: str, present: set[str], absent: set[str], kiln_cache: Path
) -> None:
    # Locks only (no wheel download): what the image would hold, from PyPI's real metadata.
    request = LockRequest(target=AMD64, requirements=(), runtime=())
    _, text, notes = lock_variants(
        request,
        MlflowChoice(reqs(pin)),
        accelerator,
        [],
        kiln_cache,
        lambda _: None,  # type: ignore[arg-type]
    )
    names = {e.name for e in parse_lock(text)}
    assert present <= names and not absent & names, names
    if pin == "xgboost==2.1.0":
        assert "xgboost-cpu: not on the configured indexes; kept the model's pin" in notes
