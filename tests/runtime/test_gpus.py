"""GPU discovery and worker placement, from the device lists a container is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.runtime.gpus import gpu_for_slot, visible_gpus, worker_gpu_env


def dev_with(tmp_path: Path, *names: str) -> Path:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in names:
        (dev / name).touch()
    return dev


@pytest.mark.parametrize(
    ("environ", "devices", "expected"),
    [
        ({}, (), ()),  # no GPU at all
        ({}, ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"), ("0", "1")),
        ({}, ("nvidia3", "nvidiactl"), ("0",)),  # the host's GPU 3, the container's device 0
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, ("nvidia0", "nvidia1"), ("0", "1")),
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, (), ()),  # asked for, but no toolkit mounted any
        ({"NVIDIA_VISIBLE_DEVICES": "none"}, (), ()),
        ({"NVIDIA_VISIBLE_DEVICES": "0,2"}, (), ("0", "2")),  # a host without the toolkit
        ({"CUDA_VISIBLE_DEVICES": "1"}, ("nvidia0", "nvidia1"), ("1",)),
        ({"CUDA_VISIBLE_DEVICES": "GPU-8a1b, GPU-77cd"}, ("nvidia0",), ("GPU-8a1b", "GPU-77cd")),
        ({"CUDA_VISIBLE_DEVICES": ""}, ("nvidia0",), ()),  # CUDA's own way of hiding every GPU
        ({"CUDA_VISIBLE_DEVICES": "-1"}, ("nvidia0",), ()),
    ],
)
def test_visible_gpus(
    tmp_path: Path, environ: dict[str, str], devices: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert visible_gpus(environ, dev_with(tmp_path, *devices)) == expected


def test_a_missing_dev_directory_means_no_gpu(tmp_path: Path) -> None:
    assert visible_gpus({}, tmp_path / "nowhere") == ()


def test_workers_are_pinned_round_robin() -> None:
    gpus = ("0", "1", "2")
    assert [gpu_for_slot(slot, gpus) for slot in range(5)] == ["0", "1", "2", "0", "1"]
    assert worker_gpu_env(4, gpus) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert gpu_for_slot(0, ()) is None
    assert worker_gpu_env(0, ()) == {}
