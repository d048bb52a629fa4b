"""A private index with a token in its URL: used on the host, never written into the build context."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kiln.env.lockfile import parse_lock
from kiln.env.resolve import resolve_env
from kiln.env.spec import TargetPlatform
from kiln.errors import DependencyError
from tests.env.conftest import PackageIndex, native_sdist, pure_wheel

pytestmark = pytest.mark.slow

TOKEN = "kiln-test-s3cr3t-token-8d1f"
AMD64 = TargetPlatform("3.11", "linux/amd64", "2.36")


@pytest.fixture
def private_index(
    package_index: PackageIndex, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> PackageIndex:
    package_index.add(
        "kiln-fixture-private",
        *pure_wheel("kiln-fixture-private", "1.0.0", {"kiln_fixture_private/__init__.py": "VALUE = 42\n"}),
    )
    package_index.add("kiln-fixture-native", *native_sdist("kiln-fixture-native", "1.0.0"))
    url = package_index.url(f"__token__:{TOKEN}")
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", url)
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", url)
    package_index.authorizations.clear()
    return package_index


def test_token_is_used_but_never_written(
    private_index: PackageIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh cache: the lock must be made (and fetched) through the private index here.
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "requirements"
    model.mkdir()
    reqs = model / "requirements.txt"
    reqs.write_text(
        f"--extra-index-url {private_index.url(f'__token__:{TOKEN}')}\nkiln-fixture-private==1.0.0\n",
        encoding="utf-8",
    )
    work_dir = tmp_path / "ctx"
    spec = resolve_env(
        None, env_manager="virtualenv", target=AMD64, work_dir=work_dir, requirements_files=[reqs]
    )
    # The token reached the index (uv and pip authenticated with it)...
    expected = "Basic " + base64.b64encode(f"__token__:{TOKEN}".encode()).decode()
    assert expected in private_index.authorizations
    # ...the private package is locked and fetched...
    names = {entry.name for entry in parse_lock(spec.lock_file.read_text())}  # type: ignore[union-attr]
    assert "kiln-fixture-private" in names
    assert (spec.wheelhouse / "kiln_fixture_private-1.0.0-py3-none-any.whl").is_file()  # type: ignore[operator]
    # ...and nothing kiln wrote (build context, cache) contains it, in names or contents.
    for root in (work_dir, tmp_path / "cache"):
        for path in root.rglob("*"):
            assert TOKEN not in str(path)
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path
    assert all(TOKEN not in note for note in spec.notes)
    assert any("--extra-index-url http://****@127.0.0.1" in note for note in spec.notes)


def test_sdist_only_native_package_is_refused_by_name(
    private_index: PackageIndex, kiln_cache: Path, tmp_path: Path
) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("kiln-fixture-native==1.0.0\n", encoding="utf-8")
    with pytest.raises(DependencyError) as info:
        resolve_env(
            None, env_manager="local", target=AMD64, work_dir=tmp_path / "ctx", requirements_files=[reqs]
        )
    message = info.value.message
    assert "package kiln-fixture-native==1.0.0 has no wheel for CPython 3.11 x86_64-manylinux_2_36" in message
    assert "only pure-Python wheels" in message
    assert TOKEN not in info.value.format()
