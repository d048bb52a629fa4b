"""Requirements files are parsed without a shell, and includes never leave their directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kiln.env.requirements import parse_requirement_lines, read_requirements_file
from kiln.errors import DependencyError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_comments_continuations_markers_and_hashes(tmp_path: Path) -> None:
    req = write(
        tmp_path / "requirements.txt",
        "# a comment\n"
        "scikit-learn==1.5.2  # trailing comment\n"
        "\n"
        "numpy>=1.26,\\\n"
        "  <3\n"
        'tomli>=2; python_version < "3.11"\n'
        "pandas==2.2.3 --hash=sha256:" + "0" * 64 + "\n",
    )
    parsed = read_requirements_file(req)
    assert [str(line) for line in parsed.requirements] == [
        "scikit-learn==1.5.2",
        "numpy<3,>=1.26",
        'tomli>=2; python_version < "3.11"',
        "pandas==2.2.3",
    ]
    assert [line.origin for line in parsed.requirements] == [
        f"{req}:2",
        f"{req}:4",
        f"{req}:6",
        f"{req}:7",
    ]


def test_nested_includes_and_constraints_inside_the_directory(tmp_path: Path) -> None:
    write(tmp_path / "extra" / "more.txt", "joblib==1.4.2\n-c ../constraints.txt\n")
    write(tmp_path / "constraints.txt", "threadpoolctl<4\n")
    req = write(tmp_path / "requirements.txt", "-r extra/more.txt\n--requirement=base.txt\n")
    write(tmp_path / "base.txt", "scipy\n")
    parsed = read_requirements_file(req)
    assert [str(line) for line in parsed.requirements] == ["joblib==1.4.2", "scipy"]
    assert [str(line) for line in parsed.constraints] == ["threadpoolctl<4"]
    assert parsed.requirements[0].origin == "extra/more.txt:1"


@pytest.mark.parametrize("include", ["../../etc/passwd", "../outside.txt", "sub/../../outside.txt"])
def test_include_escaping_the_directory_is_refused(tmp_path: Path, include: str) -> None:
    write(tmp_path / "outside.txt", "requests\n")
    req = write(tmp_path / "model" / "requirements.txt", f"numpy\n-r {include}\n")
    with pytest.raises(DependencyError) as info:
        read_requirements_file(req)
    message = info.value.format()
    assert include in message
    assert "outside" in message
    assert str((tmp_path / "model").resolve()) in message


def test_absolute_include_is_refused(tmp_path: Path) -> None:
    req = write(tmp_path / "requirements.txt", "-c /etc/passwd\n")
    with pytest.raises(DependencyError, match=r"absolute path.*relative paths inside"):
        read_requirements_file(req)


def test_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "secret.txt", "requests\n")
    model = tmp_path / "model"
    model.mkdir()
    os.symlink(tmp_path / "secret.txt", model / "link.txt")
    req = write(model / "requirements.txt", "-r link.txt\n")
    with pytest.raises(DependencyError, match="outside"):
        read_requirements_file(req)


def test_python_env_lines_resolve_includes_against_the_model_root(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "mlflow==3.17.2\n")
    parsed = parse_requirement_lines(
        ["-r requirements.txt", "cloudpickle"], origin="python_env.yaml", root=tmp_path
    )
    assert [str(line) for line in parsed.requirements] == ["mlflow==3.17.2", "cloudpickle"]
    with pytest.raises(DependencyError, match="outside"):
        parse_requirement_lines(["-r ../requirements.txt"], origin="python_env.yaml", root=tmp_path / "x")


def test_include_loop_and_missing_include(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "-r b.txt\n")
    write(tmp_path / "b.txt", "-r a.txt\n")
    with pytest.raises(DependencyError, match="loop"):
        read_requirements_file(tmp_path / "a.txt")
    write(tmp_path / "c.txt", "-r nope.txt\n")
    with pytest.raises(DependencyError, match=r"c\.txt:1: -r 'nope\.txt': no such file"):
        read_requirements_file(tmp_path / "c.txt")


def test_invalid_requirement_names_file_and_line(tmp_path: Path) -> None:
    req = write(tmp_path / "requirements.txt", "numpy\nnot a requirement!!\n")
    with pytest.raises(DependencyError) as info:
        read_requirements_file(req)
    assert f"{req}:2" in info.value.message
    assert "'not a requirement!!' is not a valid requirement" in info.value.message


def test_editable_and_url_requirements_are_refused_without_leaking_credentials(tmp_path: Path) -> None:
    with pytest.raises(DependencyError, match="editable"):
        parse_requirement_lines(["-e ./src"], origin="x", root=tmp_path)
    with pytest.raises(DependencyError) as info:
        parse_requirement_lines(
            ["private @ https://user:s3cr3t@example.invalid/private-1.0.tar.gz"], origin="x", root=tmp_path
        )
    assert "direct URL requirement" in info.value.message
    assert "s3cr3t" not in info.value.format()


def test_index_options_are_ignored_and_redacted(tmp_path: Path) -> None:
    parsed = parse_requirement_lines(
        ["--extra-index-url https://__token__:s3cr3t@pypi.example.invalid/simple", "--pre", "numpy"],
        origin="requirements.txt",
        root=tmp_path,
    )
    assert [str(line) for line in parsed.requirements] == ["numpy"]
    assert parsed.ignored_options == (
        "requirements.txt:1: --extra-index-url https://****@pypi.example.invalid/simple",
        "requirements.txt:2: --pre",
    )


def test_wheel_inside_the_model_is_a_pinned_local_requirement(tmp_path: Path) -> None:
    wheel = write(tmp_path / "wheels" / "my_lib-1.2.0-py3-none-any.whl", "not really a zip")
    parsed = parse_requirement_lines(["wheels/my_lib-1.2.0-py3-none-any.whl"], origin="r", root=tmp_path)
    (line,) = parsed.requirements
    assert str(line) == "my-lib==1.2.0"
    assert line.local_wheel == wheel.resolve()
    with pytest.raises(DependencyError, match="outside"):
        parse_requirement_lines(["../my_lib-1.2.0-py3-none-any.whl"], origin="r", root=tmp_path / "wheels")
    with pytest.raises(DependencyError, match="not a wheel"):
        parse_requirement_lines(["./src/project"], origin="r", root=tmp_path)
