"""Reading uv's hashed lock, and adding hashes for wheels built on the host."""

from __future__ import annotations

import hashlib

import pytest

from kiln.env.lockfile import add_hashes, ensure_no_credentials, lock_digest, parse_lock
from kiln.errors import DependencyError

A, B, C = "a" * 64, "b" * 64, "c" * 64

LOCK = f"""\
docopt==0.6.2 \\
    --hash=sha256:{A}
    # via -r model.in
Scikit_Learn==1.9.1 \\
    --hash=sha256:{B} \\
    --hash=sha256:{C}
    # via
    #   -r model.in
"""


def test_parse() -> None:
    entries = parse_lock(LOCK)
    assert [(e.name, e.version, sorted(e.hashes)) for e in entries] == [
        ("docopt", "0.6.2", [A]),
        ("scikit-learn", "1.9.1", [B, C]),
    ]
    assert entries[1].pin == "scikit-learn==1.9.1"


def test_add_hashes_appends_after_the_entrys_last_hash() -> None:
    text = add_hashes(LOCK, {"docopt": "d" * 64})
    assert text.splitlines()[:4] == [
        "docopt==0.6.2 \\",
        f"    --hash=sha256:{A} \\",
        f"    --hash=sha256:{'d' * 64}",
        "    # via -r model.in",
    ]
    assert parse_lock(text)[0].hashes == {A, "d" * 64}
    assert parse_lock(text)[1].hashes == {B, C}


def test_lines_kiln_cannot_install_offline_are_refused() -> None:
    with pytest.raises(DependencyError, match="no --hash"):
        parse_lock("numpy==2.0.0\n")
    with pytest.raises(DependencyError, match="does not pin one version"):
        parse_lock(f"numpy>=2 --hash=sha256:{A}\n")


def test_digest_and_credentials() -> None:
    assert lock_digest("x\n") == "sha256:" + hashlib.sha256(b"x\n").hexdigest()
    ensure_no_credentials(LOCK, "the lock")
    with pytest.raises(DependencyError, match="credentials"):
        ensure_no_credentials("# from https://user:tok@example.invalid/simple\n", "the lock")
