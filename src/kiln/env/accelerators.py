"""CPU or CUDA: which variant of each accelerated package goes into the image.

Several packages publish a CPU build and a CUDA build under different names or local versions:
``xgboost`` (its manylinux wheels pull ``nvidia-nccl-cu12``, ~470 MB) and ``xgboost-cpu``;
``onnxruntime-gpu`` and ``onnxruntime``; PyTorch's ``X+cpu`` and ``X+cu12N`` builds on its own
index (``torch==X`` from PyPI brings the CUDA libraries on Linux). A CPU image asks for the CPU
variant and falls back to what the model named when no configured index has it, saying so; a
CUDA image asks for the CUDA variant. The lock is then checked: a CPU image that still carries
CUDA libraries says which packages brought them and how to drop them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

Accelerator = Literal["cpu", "cuda"]
ACCELERATORS: tuple[Accelerator, ...] = ("cpu", "cuda")

_CUDA_NAME = re.compile(r"^(nvidia-.+|cupy-cuda.+|onnxruntime-gpu|tensorrt.*|jax-cuda.+|torch-tensorrt)$")
_CUDA_LOCAL = re.compile(r"\+cu\d+")
_CUDA_EXTRAS = {"tensorflow": ("and-cuda",), "jax": ("cuda", "cuda11", "cuda12", "cuda12-pip", "cuda13")}
_CUDA_LIBRARY = re.compile(r"^(nvidia-[a-z0-9-]+|cupy-cuda\d+x?|triton)$")
"""Packages in a lock that are CUDA runtime libraries (or only useful with them)."""

_CPU_NAMES = {"xgboost": "xgboost-cpu", "onnxruntime-gpu": "onnxruntime"}
_CUDA_NAMES = {cpu: gpu for gpu, cpu in _CPU_NAMES.items()}
SAME_MODULE: dict[str, tuple[str, ...]] = {
    name: (name, other) for pair in _CPU_NAMES.items() for name, other in (pair, pair[::-1])
}
"""Distributions that install the same module: either satisfies a requirement on the other
(a model saved with ``xgboost==X`` runs on an image that has ``xgboost-cpu==X``)."""
_PYTORCH = ("torch", "torchvision", "torchaudio")


@dataclass(frozen=True)
class Swap:
    """One requirement replaced by its variant for the accelerator, and how to undo it."""

    original: Requirement
    variant: Requirement

    @property
    def variant_name(self) -> str:
        return canonicalize_name(self.variant.name)


@dataclass(frozen=True)
class VariantChoice:
    """The requirements with each accelerated package's variant chosen."""

    accelerator: Accelerator
    requirements: tuple[Requirement, ...]
    swaps: tuple[Swap, ...] = ()

    def without(self, names: Iterable[str]) -> VariantChoice:
        """The choice with the swaps to packages ``names`` undone (no index had those variants)."""
        undo = {canonicalize_name(name) for name in names}
        kept = tuple(s for s in self.swaps if s.variant_name not in undo)
        undone = {str(s.variant): s.original for s in self.swaps if s.variant_name in undo}
        requirements = tuple(undone.get(str(r), r) for r in self.requirements)
        return VariantChoice(self.accelerator, requirements, kept)

    def notes(self) -> tuple[str, ...]:
        return tuple(
            f"{s.original} -> {s.variant} for a {self.accelerator.upper()} image" for s in self.swaps
        )


def detect(requirements: Sequence[Requirement]) -> Accelerator:
    """``cuda`` when the model names a CUDA build (``nvidia-*``, ``onnxruntime-gpu``, ``cupy-cuda*``,
    ``torch==X+cuNNN``, ``tensorflow[and-cuda]``, ``jax[cuda12]``), else ``cpu``."""
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if _CUDA_NAME.match(name) or _CUDA_LOCAL.search(str(requirement.specifier)):
            return "cuda"
        if set(_CUDA_EXTRAS.get(name, ())) & {canonicalize_name(e) for e in requirement.extras}:
            return "cuda"
    return "cpu"


def choose_variants(requirements: Sequence[Requirement], accelerator: Accelerator) -> VariantChoice:
    """Each package with a CPU and a CUDA build swapped to ``accelerator``'s."""
    names = _CPU_NAMES if accelerator == "cpu" else _CUDA_NAMES
    present = {canonicalize_name(r.name) for r in requirements}
    result: list[Requirement] = []
    swaps: list[Swap] = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        variant = None
        if name in names and names[name] not in present:
            variant = _renamed(requirement, names[name])
        elif accelerator == "cpu" and name in _PYTORCH:
            variant = _pytorch_cpu(requirement)
        if variant is None:
            result.append(requirement)
        else:
            result.append(variant)
            swaps.append(Swap(requirement, variant))
    return VariantChoice(accelerator, tuple(result), tuple(swaps))


def cuda_libraries(names: Iterable[str]) -> tuple[str, ...]:
    """The packages among ``names`` (a lock's) that are CUDA libraries, sorted."""
    return tuple(sorted(n for n in (canonicalize_name(x) for x in names) if _CUDA_LIBRARY.match(n)))


def cuda_note(libraries: Sequence[str], requirements: Sequence[str]) -> str:
    """What to tell the user when a CPU image's lock holds CUDA libraries."""
    pytorch = [r for r in requirements if canonicalize_name(Requirement(r).name) in _PYTORCH]
    how = (
        "PyTorch's CPU builds are on its own index: add "
        "--extra-index-url https://download.pytorch.org/whl/cpu to pip's configuration"
        if pytorch
        else "pin the packages' CPU builds in the model's requirements"
    )
    return (
        f"this CPU image carries CUDA libraries ({', '.join(libraries)}) that its requirements pull in; "
        f"{how}, or build with --accelerator cuda if the model needs a GPU"
    )


def _pytorch_cpu(requirement: Requirement) -> Requirement | None:
    """``torch==X`` -> ``torch==X+cpu`` (PyTorch's CPU build); None when the pin is not one exact version."""
    specs = list(requirement.specifier)
    if len(specs) != 1 or specs[0].operator not in ("==", "===") or "+" in specs[0].version:
        return None
    if "*" in specs[0].version:
        return None
    pinned = Requirement(str(requirement))
    pinned.specifier = type(requirement.specifier)(f"=={specs[0].version}+cpu")
    return pinned


def _renamed(requirement: Requirement, name: str) -> Requirement:
    renamed = Requirement(str(requirement))
    renamed.name = name
    return renamed
