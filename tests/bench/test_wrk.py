"""bench.wrk against a real HTTP server: the Lua script's requests and the numbers read back."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench import wrk

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (scripts/setup)")


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    status = 200
    seen: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.command, self.headers["Content-Type"], body))
        answer = b'{"predictions": [0]}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/invocations", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_posts_the_body_with_its_content_type_and_reads_the_counts(
    server: tuple[str, type[_Recorder]], tmp_path: Path
) -> None:
    url, handler = server
    body = '{"dataframe_split": {"columns": ["a"], "data": [[1.5]]}}'
    script = tmp_path / "post.lua"
    script.write_text(wrk.lua_script(body))

    result = wrk.run(url, script, connections=2, seconds=1)

    assert result.requests > 0
    # Requests still in flight when the time is up reach the server but are not counted.
    assert result.requests <= len(handler.seen) <= result.requests + 2
    assert {seen for seen in handler.seen} == {("POST", "application/json", body.encode())}
    assert result.errors == 0
    assert 0.9 < result.seconds < 2
    assert result.rps == pytest.approx(result.requests / result.seconds)
    assert 0 < result.p50_ms <= result.p99_ms


def test_counts_non_2xx_answers_as_errors(server: tuple[str, type[_Recorder]], tmp_path: Path) -> None:
    url, handler = server
    handler.status = 503
    script = tmp_path / "post.lua"
    script.write_text(wrk.lua_script("{}"))

    result = wrk.run(url, script, connections=1, seconds=1)

    assert result.requests > 0
    assert result.non_2xx == result.requests


def test_a_server_that_is_not_there_is_an_error_not_a_result(tmp_path: Path) -> None:
    script = tmp_path / "post.lua"
    script.write_text(wrk.lua_script("{}"))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RuntimeError, match=f"exited 1: unable to connect to 127.0.0.1:{port}"):
        wrk.run(f"http://127.0.0.1:{port}/", script, connections=1, seconds=1)


def test_parse_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="no WRK_RESULT line in wrk output"):
        wrk.parse("Running 1s test @ http://127.0.0.1:1/\n")


def test_a_body_that_would_end_the_lua_string_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\]==\]"):
        wrk.lua_script('{"a": "]==]"}')
