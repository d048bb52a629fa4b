"""bench/gpu_check.py where there is no GPU: it says what is missing; its verdict from given answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import gpu_check

GPUS = ["GPU 0: NVIDIA H200 (UUID: GPU-a)", "GPU 1: NVIDIA H200 (UUID: GPU-b)"]


def answer(pid: int, device: str, uuid: str, visible: str) -> dict[str, object]:
    return {
        "y": 0.5, "pid": pid, "device": device, "gpu_name": "NVIDIA H200", "gpu_uuid": uuid,
        "cuda_visible_devices": visible,
    }  # fmt: skip


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA driver")
def test_without_a_gpu_it_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main(["--output", str(tmp_path / "report.json")]) == 2
    assert "no nvidia-smi on PATH" in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()


def test_each_worker_on_its_own_gpu_passes() -> None:
    answers = [
        answer(10, "cuda", "GPU-a", "0"),
        answer(11, "cuda", "GPU-b", "1"),
        answer(10, "cuda", "GPU-a", "0"),
    ]
    report = gpu_check._report(GPUS, answers, None)
    assert report["ok"] is True
    assert [w["answers"] for w in report["workers"]] == [2, 1]  # type: ignore[index]


@pytest.mark.parametrize(
    "answers",
    [
        [answer(10, "cuda", "GPU-a", "0"), answer(11, "cuda", "GPU-a", "0")],  # both on one GPU
        [answer(10, "cuda", "GPU-a", "0"), answer(11, "cpu", "", "")],  # one fell back to the CPU
        [answer(10, "cuda", "GPU-a", "0")],  # the second worker never answered
    ],
)
def test_shared_cpu_or_missing_workers_fail(answers: list[dict[str, object]]) -> None:
    assert gpu_check._report(GPUS, answers, None)["ok"] is False
