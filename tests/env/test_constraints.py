"""The host's pip constraint files reach the lock, and a conflict with one names both sides.

The locks run real ``uv pip compile`` against the configured indexes under a real
constraint file named by ``PIP_CONSTRAINT`` (which wins over pip.conf's ``constraint``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.env import indexes
from kiln.env.fetch import fetch_wheels
from kiln.env.lockfile import parse_lock
from kiln.env.locking import LockRequest, cache_key, compile_lock
from kiln.env.spec import TargetPlatform
from kiln.env.tools import tail
from kiln.errors import DependencyError

AMD64 = TargetPlatform("3.11", "linux/amd64", "2.36")
PIP_NOISE = ("Looking in indexes", "Looking in links", "is ignored")


def constraint_file(directory: Path, *lines: str, name: str = "constraints.txt") -> Path:
    path = directory / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_constraint_files_are_split_made_absolute_and_passed_to_uv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/tmp")
    found = indexes.from_config({"constraint": "pins.txt /etc/pip/c.txt https://example.org/c.txt"})
    assert found.constraints == ("/tmp/pins.txt", "/etc/pip/c.txt", "https://example.org/c.txt")
    assert found.uv_constraint_args() == [
        "--constraint",
        "/tmp/pins.txt",
        "--constraint",
        "/etc/pip/c.txt",
        "--constraint",
        "https://example.org/c.txt",
    ]
    assert found.uv_args() == []


def test_real_pip_reports_every_file_of_pip_constraint(tmp_path: Path) -> None:
    first = constraint_file(tmp_path, "six<1.16", name="a.txt")
    second = constraint_file(tmp_path, "torch<=2.0", name="b.txt")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PIP_CONFIG_FILE": str(tmp_path / "none.conf"),
        "PIP_CONSTRAINT": f"{first} {second}",
    }
    assert indexes.pip_indexes(env).constraints == (str(first), str(second))


def test_constraint_lines_say_where_each_line_is(tmp_path: Path) -> None:
    constraint_file(tmp_path, "# more", "urllib3 < 2  # security", name="more.txt")
    main = constraint_file(
        tmp_path, "# capped on this machine", "torch<=2.14.1", "", "-c more.txt", "--hash-free-option", "six"
    )
    lines = indexes.constraint_lines((str(main), str(tmp_path / "gone.txt"), "https://example.org/c.txt"))
    assert [(line.requirement, line.name, line.origin) for line in lines] == [
        ("torch<=2.14.1", "torch", f"{main}:2"),
        ("urllib3<2", "urllib3", f"{tmp_path / 'more.txt'}:2"),
        ("six", "six", f"{main}:6"),
    ]


def test_hints_leave_out_pip_index_chatter() -> None:
    output = (
        "Looking in indexes: https://pypi.org/simple, file:///opt/pypi/simple\n"
        "Looking in links: /opt/wheels\n"
        "WARNING: Location 'file:///opt/pypi-more/simple/six/' is ignored: it is neither a file nor a "
        "directory.\n"
        "ERROR: No matching distribution found for six==99\n"
    )
    assert tail(output) == "ERROR: No matching distribution found for six==99"


@pytest.mark.slow
def test_a_constraint_below_the_models_pin_is_a_clear_error(
    tmp_path: Path, kiln_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    constraints = constraint_file(tmp_path, "# cap", "six<1.16")
    monkeypatch.setenv("PIP_CONSTRAINT", str(constraints))
    request = LockRequest(target=AMD64, requirements=("six==1.17.0",), runtime=())
    with pytest.raises(DependencyError) as caught:
        compile_lock(request, cache_dir=kiln_cache)
    error = caught.value
    assert error.message == (
        "the model's requirement 'six==1.17.0' conflicts with the host's pip constraint "
        f"'six<1.16' ({constraints}:2) (resolving for Python 3.11 linux/amd64)"
    )
    assert error.hint is not None and str(constraints) in error.hint and "PIP_CONSTRAINT" in error.hint
    assert not any(noise in error.format() for noise in PIP_NOISE)


@pytest.mark.slow
def test_a_constraint_on_a_dependency_names_the_models_requirement_and_the_constraint(
    tmp_path: Path, kiln_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    constraints = constraint_file(tmp_path, "torch<=2.14.1", "urllib3<1.20")
    monkeypatch.setenv("PIP_CONSTRAINT", str(constraints))
    request = LockRequest(target=AMD64, requirements=("requests==2.32.3",), runtime=())
    with pytest.raises(DependencyError) as caught:
        compile_lock(request, cache_dir=kiln_cache)
    assert caught.value.message.startswith(
        f"the model's requirement 'requests==2.32.3' conflicts with the host's pip constraint "
        f"'urllib3<1.20' ({constraints}:2)"
    )
    assert "torch" not in caught.value.message


@pytest.mark.slow
def test_a_constraint_narrows_an_unpinned_requirement_and_keys_the_cache(
    tmp_path: Path, kiln_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    constraints = constraint_file(tmp_path, "six<1.17")
    monkeypatch.setenv("PIP_CONSTRAINT", str(constraints))
    request = LockRequest(target=AMD64, requirements=("six",), runtime=())
    text, _cached = compile_lock(request, cache_dir=kiln_cache)
    assert [(entry.name, entry.version) for entry in parse_lock(text)] == [("six", "1.16.0")]
    # The lock goes into the image: it says a host constraint applied, not where the host keeps it.
    assert "-c (host pip constraint) constraints.txt" in text and str(tmp_path) not in text
    before = cache_key(request)
    constraint_file(tmp_path, "six<1.16")
    assert cache_key(request) != before


@pytest.mark.slow
def test_a_missing_constraint_file_is_named(
    tmp_path: Path, kiln_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_CONSTRAINT", str(tmp_path / "gone.txt"))
    request = LockRequest(target=AMD64, requirements=("six",), runtime=())
    with pytest.raises(DependencyError, match=r"constraint file '.*gone\.txt' does not exist"):
        compile_lock(request, cache_dir=kiln_cache)


@pytest.mark.slow
def test_pip_refusing_a_locked_pin_names_the_constraint_not_its_warnings(
    tmp_path: Path, kiln_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_CONSTRAINT", str(constraint_file(tmp_path, "six>=1")))
    request = LockRequest(target=AMD64, requirements=("six==1.17.0",), runtime=())
    entries = parse_lock(compile_lock(request, cache_dir=kiln_cache)[0])
    # A lock made under other settings than the fetch: pip applies today's constraint file.
    constraints = constraint_file(tmp_path, "six<1.16", name="today.txt")
    monkeypatch.setenv("PIP_CONSTRAINT", str(constraints))
    with pytest.raises(DependencyError) as caught:
        fetch_wheels(entries, target=AMD64, dest=tmp_path / "wheels", cache_dir=tmp_path / "empty-cache")
    assert caught.value.message == (
        f"the host's pip constraint 'six<1.16' ({constraints}:1) excludes the lock's 'six==1.17.0', "
        "so pip will not download it"
    )
    assert not any(noise in caught.value.format() for noise in PIP_NOISE)
