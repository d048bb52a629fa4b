"""nginx.conf rendering (golden files), its validity for the real nginx, and finding the binary."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kiln.errors import ServeError
from kiln.runtime import layout as runtime_layout
from kiln.runtime.layout import RuntimeLayout
from kiln.runtime.nginx import find_nginx, nginx_command, nginx_config, render_nginx_conf
from kiln.runtime.plan import Plan
from kiln.settings import RuntimeSettings

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("KILN_UPDATE_GOLDEN") == "1"


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; rerun with KILN_UPDATE_GOLDEN=1 and review the diff"


def test_default_config_matches_golden() -> None:
    settings = RuntimeSettings()
    config = nginx_config(settings, RuntimeLayout(Path("/tmp/kiln")), workers=2, cpus=2, open_files=1048576)
    _check_golden("nginx-default.conf", render_nginx_conf(config))


def test_loading_config_matches_golden() -> None:
    """Until a worker is ready nginx answers every path 503 itself: it proxies nowhere."""
    settings = RuntimeSettings()
    config = nginx_config(settings, RuntimeLayout(Path("/tmp/kiln")), workers=2, cpus=2, open_files=1048576)
    text = render_nginx_conf(config, loading=True)
    _check_golden("nginx-loading.conf", text)
    assert "proxy_pass" not in text


def test_root_custom_limits_config_matches_golden() -> None:
    settings = RuntimeSettings(port=9000, request_timeout=2.5, max_body_size=1000, grace_period=10)
    config = nginx_config(
        settings,
        RuntimeLayout(Path("/run/kiln")),
        workers=8,
        cpus=3,
        open_files=1024,
        user="root root",
    )
    _check_golden("nginx-root-limits.conf", render_nginx_conf(config))


def test_the_upstream_lists_only_the_listening_slots() -> None:
    """A slot's socket enters the upstream once its first worker is ready (no refused connect)."""
    layout = RuntimeLayout(Path("/tmp/kiln"))
    config = nginx_config(RuntimeSettings(), layout, workers=3, cpus=2, open_files=1048576)
    plan = Plan(RuntimeSettings(), layout, 3, nginx_binary="/usr/sbin/nginx", nginx_config=config)
    sockets = [str(layout.worker_socket(slot)) for slot in range(3)]
    first = plan.nginx_conf({0})
    assert f"server unix:{sockets[0]} " in first
    assert sockets[1] not in first and sockets[2] not in first
    assert "proxy_next_upstream_tries 2;" in first
    every = plan.nginx_conf({0, 1, 2})
    assert every == render_nginx_conf(config)
    assert all(f"server unix:{path} " in every for path in sockets)
    assert Plan(RuntimeSettings(), layout, 3, nginx_binary=None).nginx_conf({0}) == ""


def test_derived_values() -> None:
    settings = RuntimeSettings(request_timeout=60, max_body_size=200 * 1024 * 1024, grace_period=25)
    config = nginx_config(settings, RuntimeLayout(Path("/tmp/kiln")), workers=4, cpus=2, open_files=1024)
    assert config.proxy_timeout > settings.request_timeout  # the app's own 504 comes first
    assert config.client_max_body_size == settings.max_body_size
    assert config.client_body_buffer_size == 1024 * 1024
    assert config.worker_processes == 2
    assert config.worker_connections < 1024
    assert config.upstream_keepalive >= 4


@pytest.mark.parametrize(("user", "loading"), [(None, False), ("root root", False), (None, True)])
def test_rendered_config_passes_nginx_t(tmp_path: Path, user: str | None, loading: bool) -> None:
    """The real nginx accepts the config, and writes nothing outside the runtime dir to check it."""
    layout = RuntimeLayout(tmp_path / "rt")
    runtime_layout.prepare(layout).close()
    config = nginx_config(RuntimeSettings(), layout, workers=2, cpus=2, open_files=1024, user=user)
    layout.nginx_conf.write_text(render_nginx_conf(config, loading=loading))
    command = nginx_command(find_nginx(), layout)
    result = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_command_keeps_everything_in_the_runtime_dir() -> None:
    layout = RuntimeLayout(Path("/tmp/kiln"))
    assert nginx_command("/usr/sbin/nginx", layout) == [
        "/usr/sbin/nginx",
        "-e",
        "stderr",
        "-p",
        "/tmp/kiln",
        "-c",
        "/tmp/kiln/nginx.conf",
    ]


def test_find_nginx_on_path_or_fallback(tmp_path: Path) -> None:
    binary = tmp_path / "bin" / "nginx"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert find_nginx(search_path=str(binary.parent), fallbacks=()) == str(binary)
    assert find_nginx(search_path="", fallbacks=(str(binary),)) == str(binary)


def test_find_nginx_missing_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ServeError) as info:
        find_nginx(search_path=str(tmp_path), fallbacks=(str(tmp_path / "nginx"),))
    text = info.value.format()
    assert "nginx is not installed" in text
    assert "apt-get install nginx" in text
    assert "--no-nginx" in text


def test_find_nginx_configured_missing(tmp_path: Path) -> None:
    with pytest.raises(ServeError) as info:
        find_nginx(str(tmp_path / "no-such-nginx"))
    assert "no-such-nginx" in info.value.message
    assert "KILN_NGINX_BINARY" in info.value.message
