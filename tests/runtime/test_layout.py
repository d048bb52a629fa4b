"""Preparing the runtime directory: permissions, stale files, one runtime per directory."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from kiln.errors import ServeError
from kiln.runtime.layout import NGINX_TEMP_DIRS, RuntimeLayout, prepare


def test_prepare_creates_group_writable_dirs(tmp_path: Path) -> None:
    layout = RuntimeLayout(tmp_path / "kiln")
    prepare(layout).close()
    assert stat.S_IMODE(layout.root.stat().st_mode) == 0o770
    for name in NGINX_TEMP_DIRS:
        assert layout.nginx_temp(name).is_dir()


def test_prepare_removes_what_a_previous_start_left(tmp_path: Path) -> None:
    layout = RuntimeLayout(tmp_path / "kiln")
    layout.root.mkdir()
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(layout.worker_socket(0)))
    layout.nginx_pid.write_text("12345\n")
    prepare(layout).close()
    assert not layout.worker_socket(0).exists()
    assert not layout.nginx_pid.exists()


def test_second_runtime_in_the_same_dir_is_refused(tmp_path: Path) -> None:
    layout = RuntimeLayout(tmp_path / "kiln")
    held = prepare(layout)
    try:
        with pytest.raises(ServeError) as info:
            prepare(layout)
        assert "is in use by another kiln runtime" in info.value.message
    finally:
        held.close()
    prepare(layout).close()  # free again once the first one is gone


def test_runtime_dir_too_long_for_a_unix_socket(tmp_path: Path) -> None:
    layout = RuntimeLayout(tmp_path / ("x" * 120))
    with pytest.raises(ServeError) as info:
        prepare(layout).close()
    assert "too long for a unix socket path" in info.value.message


def test_runtime_dir_not_creatable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ServeError) as info:
        prepare(RuntimeLayout(tmp_path / "file" / "kiln"))
    assert "cannot create runtime directory" in info.value.message
    assert "KILN_RUNTIME_DIR" in info.value.format()
