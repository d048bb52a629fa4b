"""The model's layout: which files get a layer of their own, and how they reach a build without a copy."""

from __future__ import annotations

import os
from pathlib import Path

from kiln.image.model_files import LargeFile, ModelLayout, copy_model, place_large_files, plan_model_layout

MIB = 1 << 20


def sized(path: Path, size: int, *, head: bytes = b"") -> Path:
    """A sparse file of ``size`` bytes starting with ``head`` (cheap on disk, distinct by head)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
    path.chmod(0o644)
    return path


def large_model(root: Path) -> Path:
    (root / "artifacts").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    sized(root / "artifacts" / "weights-b.bin", 3 * MIB, head=b"b")
    sized(root / "artifacts" / "weights-a.bin", 2 * MIB, head=b"a")
    sized(root / "tokenizer.json", MIB - 1)
    (root / "run.sh").write_text("#!/bin/sh\n")
    sized(root / "big $HOME.bin", 2 * MIB)  # a COPY source would expand it: stays with the small files
    os.symlink("artifacts/weights-a.bin", root / "latest.bin")
    return root


def test_files_at_or_over_the_threshold_get_a_layer_each_sorted(tmp_path: Path) -> None:
    model = large_model(tmp_path / "m")
    os.chmod(model / "artifacts" / "weights-b.bin", 0o700)
    layout = plan_model_layout(model, threshold=MIB)
    assert layout == ModelLayout(
        MIB,
        (
            LargeFile("artifacts/weights-a.bin", 2 * MIB, 0o644),
            LargeFile("artifacts/weights-b.bin", 3 * MIB, 0o755),
        ),
    )
    assert plan_model_layout(model).large == ()  # the default threshold, 64 MiB


def test_large_files_are_hard_links_and_the_copy_skips_them(tmp_path: Path) -> None:
    model = large_model(tmp_path / "m")
    layout = plan_model_layout(model, threshold=MIB)
    copy_model(model, tmp_path / "small", skip=layout.large_paths)
    copied = place_large_files(model, layout, tmp_path / "large", exact_modes=False)
    assert copied == 0
    assert not (tmp_path / "small" / "artifacts" / "weights-a.bin").exists()
    assert (tmp_path / "small" / "tokenizer.json").stat().st_size == MIB - 1
    assert (tmp_path / "small" / "latest.bin").is_symlink()
    for item in layout.large:
        linked = (tmp_path / "large" / item.path).stat()
        original = (model / item.path).stat()
        assert (linked.st_ino, linked.st_dev) == (original.st_ino, original.st_dev)


def test_the_classic_builder_gets_a_copy_when_the_mode_is_not_the_images(tmp_path: Path) -> None:
    model = large_model(tmp_path / "m")
    os.chmod(model / "artifacts" / "weights-a.bin", 0o600)
    layout = plan_model_layout(model, threshold=MIB)
    copied = place_large_files(model, layout, tmp_path / "large", exact_modes=True)
    assert copied == 2 * MIB
    a = (tmp_path / "large" / "artifacts" / "weights-a.bin").stat()
    b = (tmp_path / "large" / "artifacts" / "weights-b.bin").stat()
    assert (a.st_mode & 0o777, a.st_nlink) == (0o644, 1)  # copied, given the image's mode
    assert b.st_nlink == 2  # already 0644: linked
    assert (
        model / "artifacts" / "weights-a.bin"
    ).stat().st_mode & 0o777 == 0o600  # the user's file untouched
