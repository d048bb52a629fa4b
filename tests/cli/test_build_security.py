"""``kiln generate-dockerfile`` on hostile models: nothing outside the model is read or copied, no shell runs.

Each case goes through the real CLI (``python -m kiln``) and must end in one
``Error: ...`` line and exit status 1, without a traceback. Docker is out of reach on
purpose (the default base image is then assumed): these checks happen on the host,
before anything is built. The tests record their findings for docs/reliability.md
(see tests/trials.py).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import kiln
from tests.trials import record_trial

RecordProperty = Callable[[str, object], None]
AREA = "builder security"
Layout = Callable[[Path, Path], None]
"""Turns a copy of a good model (first argument) hostile, using a directory outside it (second)."""


def _link_file_outside(model: Path, outside: Path) -> None:
    (model / "weights.bin").symlink_to(outside / "secret.txt")


def _link_dir_outside(model: Path, outside: Path) -> None:
    (model / "data").symlink_to(outside)


def _link_relative_escape(model: Path, outside: Path) -> None:
    (model / "artifacts").mkdir()
    (model / "artifacts" / "weights.bin").symlink_to(Path("..") / ".." / outside.name / "secret.txt")


def _symlink_loop(model: Path, outside: Path) -> None:
    (model / "loop1").symlink_to("loop2")
    (model / "loop2").symlink_to("loop1")


def _requirements_link_outside(model: Path, outside: Path) -> None:
    (model / "python_env.yaml").unlink()
    mlmodel = model / "MLmodel"
    mlmodel.write_text(
        "".join(line for line in mlmodel.read_text().splitlines(True) if "virtualenv:" not in line)
    )
    (model / "requirements.txt").unlink()
    (model / "requirements.txt").symlink_to(outside / "requirements.txt")


def _env_file_absolute(model: Path, outside: Path) -> None:
    _rename_env_file(model, str(outside / "python_env.yaml"))


def _env_file_dotdot(model: Path, outside: Path) -> None:
    _rename_env_file(model, f"../{outside.name}/python_env.yaml")


def _rename_env_file(model: Path, name: str) -> None:
    mlmodel = model / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("virtualenv: python_env.yaml", f"virtualenv: {name}"))


CASES: dict[str, tuple[Layout, str]] = {
    "a symlink to a file outside the model": (_link_file_outside, "that points outside the model directory"),
    "a symlink to a directory outside the model": (
        _link_dir_outside,
        "that points outside the model directory",
    ),
    "a relative symlink climbing out with '..'": (
        _link_relative_escape,
        "that points outside the model directory",
    ),
    "a symlink loop": (_symlink_loop, "that cannot be followed"),
    "requirements.txt symlinked outside the model": (
        _requirements_link_outside,
        "outside the model directory",
    ),
    "MLmodel naming /abs/path/python_env.yaml": (_env_file_absolute, "by the absolute path"),
    "MLmodel naming ../elsewhere/python_env.yaml": (_env_file_dotdot, "outside the model directory"),
}


def _user_error(result: subprocess.CompletedProcess[str]) -> str:
    """The ``Error:`` line of a failed run; fails the test on a traceback or another exit status."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    return errors[0]


def _generate(model: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    no_docker = {"DOCKER_HOST": "unix:///nonexistent.sock"}
    return kiln("generate-dockerfile", "-m", str(model), "-d", str(out), *extra, env=no_docker)


def test_models_reaching_outside_their_directory_are_refused(
    model_dir: Callable[[str], Path], tmp_path: Path, record_property: RecordProperty
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("kiln-test-outside-secret\n")
    (outside / "requirements.txt").write_text("numpy\n")
    shutil.copy(model_dir("memory_hog") / "python_env.yaml", outside / "python_env.yaml")
    errors = {}
    for number, (what, (make, expected)) in enumerate(CASES.items()):
        model = tmp_path / f"model-{number}"
        shutil.copytree(model_dir("memory_hog"), model)
        make(model, outside)
        out = tmp_path / f"context-{number}"
        errors[what] = error = _user_error(_generate(model, out))
        assert expected in error, (what, error)
        assert not any(p.read_bytes().count(b"kiln-test-outside-secret") for p in _files(out)), what
    record_trial(
        record_property,
        area=AREA,
        scenario="kiln generate-dockerfile on a model with " + "; ".join(CASES),
        attempts=len(CASES),
        outcome=f"{len(errors)} of {len(CASES)} refused with one 'Error:' line, exit 1, no traceback, "
        "nothing from outside in the build context",
    )


def test_an_archive_is_never_extracted(tmp_path: Path, record_property: RecordProperty) -> None:
    # kiln takes model directories (or URIs MLflow downloads into one); it never unpacks archives.
    planted = [tmp_path / "escaped-dotdot", tmp_path / "escaped-absolute"]
    archive = tmp_path / "work" / "model.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("MLmodel", "../escaped-dotdot", str(planted[1])):
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"boom"))
    error = _user_error(_generate(archive, tmp_path / "context"))
    record_trial(
        record_property,
        area=AREA,
        scenario="a model.tar.gz with '../' and absolute member names given as the model",
        attempts=1,
        outcome=f"refused ({error.removeprefix('Error: ').replace(str(archive), archive.name)}); "
        "no member written anywhere",
    )
    assert "is not a directory" in error
    assert not any(p.exists() for p in planted)


INJECTIONS = (
    "numpy; $(touch {marker})",
    "numpy`touch {marker}`",
    "numpy && touch {marker}",
    "numpy | touch {marker}",
    "numpy\n-r $(touch {marker})",
)
LITERAL = 'numpy; python_version == "$(touch {marker})"'
"""A valid PEP 508 marker whose string literal only looks like a command: compared, never run."""


def test_requirement_strings_never_reach_a_shell(
    model_dir: Callable[[str], Path], tmp_path: Path, record_property: RecordProperty
) -> None:
    marker = tmp_path / "pwned"
    clean = model_dir("memory_hog")
    runs = []
    for number, template in enumerate((*INJECTIONS, LITERAL)):
        line = template.format(marker=marker)
        model = tmp_path / f"model-{number}"
        shutil.copytree(clean, model)
        with (model / "requirements.txt").open("a") as handle:
            handle.write(f"\n{line}\n")
        extra = tmp_path / f"extra-{number}.txt"
        extra.write_text(line + "\n")
        for how, args in (
            ("requirements.txt", (model,)),
            ("--requirements", (clean, "--requirements", str(extra))),
        ):
            out = tmp_path / f"context-{len(runs)}"
            runs.append((line, how, out, _generate(args[0], out, *args[1:])))
    accepted = [(line, out) for line, _, out, result in runs if result.returncode == 0]
    refused = [(line, how, result) for line, how, _, result in runs if result.returncode != 0]
    record_trial(
        record_property,
        area=AREA,
        scenario="requirements with $(...), backticks, &&, | and an include of $(...), in requirements.txt "
        "and in --requirements FILE, plus a valid marker comparing against '$(touch ...)'",
        attempts=len(runs),
        outcome=f"{len(refused)} refused as invalid, {len(accepted)} (the valid marker) made a context; "
        f"{'a' if marker.exists() else 'no'} file created by any of them",
    )
    assert not marker.exists()
    for line, how, result in refused:
        error = _user_error(result)
        assert "is not a valid requirement" in error or "no such file" in error, (line, how, error)
    assert [line for line, _ in accepted] == [LITERAL.format(marker=marker)] * 2
    for _, out in accepted:
        assert "touch" not in (out / "Dockerfile").read_text()


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()] if root.exists() else []
