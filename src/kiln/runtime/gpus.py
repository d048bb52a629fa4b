"""The GPUs this container was given, and which one each worker uses.

A container sees the GPUs its runtime passed in: the NVIDIA container toolkit reads
``NVIDIA_VISIBLE_DEVICES`` (``all``, ``none``, or indices/UUIDs) and mounts ``/dev/nvidiaN`` for
each; inside, CUDA numbers the visible devices 0..N-1 and ``CUDA_VISIBLE_DEVICES`` narrows them
further. kiln reads the same sources without importing a CUDA library (the supervisor must not
create a CUDA context before it forks workers): ``CUDA_VISIBLE_DEVICES`` when set, else the
``/dev/nvidiaN`` devices present (which is what ``NVIDIA_VISIBLE_DEVICES`` selected), else
``NVIDIA_VISIBLE_DEVICES``' own list when no device files are visible (a host without the toolkit).

Each worker gets one GPU as ``CUDA_VISIBLE_DEVICES``, round-robin by worker slot, so a model
loaded on ``cuda`` (device 0 in the worker's view) lands on its own GPU. With CUDA images the
default worker count is one per GPU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
NVIDIA_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
_NONE = frozenset({"", "none", "void", "-1"})
_DEVICE = re.compile(r"^nvidia(\d+)$")


def visible_gpus(environ: Mapping[str, str], dev: Path = Path("/dev")) -> tuple[str, ...]:
    """The GPU ids this process may use, as CUDA_VISIBLE_DEVICES would name them; () without GPUs."""
    cuda = environ.get(CUDA_VISIBLE_DEVICES)
    if cuda is not None:
        return _ids(cuda)
    devices = _device_files(dev)
    if devices:
        # Inside a container CUDA renumbers what it sees from 0; the device files' own numbers are
        # the host's, so only their count matters.
        return tuple(str(index) for index in range(len(devices)))
    nvidia = environ.get(NVIDIA_VISIBLE_DEVICES)
    if nvidia is not None and nvidia.strip().lower() != "all":
        return _ids(nvidia)
    return ()


def gpu_for_slot(slot: int, gpus: tuple[str, ...]) -> str | None:
    """The GPU worker ``slot`` is pinned to (round-robin), or None without GPUs."""
    return gpus[slot % len(gpus)] if gpus else None


def worker_gpu_env(slot: int, gpus: tuple[str, ...]) -> dict[str, str]:
    """The variables that pin worker ``slot`` to its GPU ({} without GPUs)."""
    gpu = gpu_for_slot(slot, gpus)
    return {} if gpu is None else {CUDA_VISIBLE_DEVICES: gpu}


def _ids(value: str) -> tuple[str, ...]:
    if value.strip().lower() in _NONE:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _device_files(dev: Path) -> list[int]:
    try:
        names = [path.name for path in dev.iterdir()]
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(_DEVICE.match, names) if m)
