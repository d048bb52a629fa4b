"""ProxyCheck polls a real HTTP server off the caller's thread and wakes a selector when done."""

from __future__ import annotations

import http.server
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from kiln.runtime.proxycheck import ProxyCheck


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ping_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _wait(check: ProxyCheck, timeout: float) -> float:
    """Seconds until the check's pipe is readable, through a selector as the supervisor waits."""
    began = time.monotonic()
    with selectors.DefaultSelector() as selector:
        selector.register(check, selectors.EVENT_READ)
        assert selector.select(timeout), "the check never said it was done"
    return time.monotonic() - began


def test_a_server_that_answers_is_healthy(ping_server: int) -> None:
    check = ProxyCheck(ping_server, "127.0.0.1")
    assert check.healthy is None or check.healthy  # the caller's thread was not held
    _wait(check, 10)
    check.close()
    assert check.healthy is True


def test_nothing_listening_is_unhealthy_after_the_limit_and_the_caller_never_waits() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        began = time.monotonic()
        check = ProxyCheck(port, "127.0.0.1", limit=0.5)
        assert time.monotonic() - began < 0.2
        assert _wait(check, 10) >= 0.4
        check.close()
    assert check.healthy is False
