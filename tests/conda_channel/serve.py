"""Serve a conda channel directory over HTTP on 127.0.0.1, open, behind basic auth, or behind a token.

One server, three views of the same directory::

    http://127.0.0.1:<port>/channel/<subdir>/<file>               open
    http://<user>:<password>@127.0.0.1:<port>/private/...         basic auth (401 without it)
    http://127.0.0.1:<port>/t/<token>/private/...                 anaconda.org-style token path

Every request is recorded (path and Authorization header) so a test can see what a client
sent. ``tamper`` makes the server answer one file name with altered bytes, for hash checks.
"""

from __future__ import annotations

import base64
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType


@dataclass
class Request:
    path: str
    authorization: str


@dataclass
class ChannelServer:
    """A running server; use as a context manager or call ``start``/``stop``."""

    root: Path
    user: str = "kiln-user"
    password: str = field(default_factory=lambda: "pw-" + secrets.token_hex(8))
    token: str = field(default_factory=lambda: "tk-" + secrets.token_hex(12))
    requests: list[Request] = field(default_factory=list)
    tampered: set[str] = field(default_factory=set)
    tls: tuple[Path, Path] | None = None
    """(certificate, key) PEM files: serve HTTPS instead of HTTP."""
    _server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the channel server is not running"
        return self._server.server_address[1]

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        """The open channel."""
        return f"{self.scheme}://127.0.0.1:{self.port}/channel"

    @property
    def private_url(self) -> str:
        """The basic-auth channel, without credentials."""
        return f"{self.scheme}://127.0.0.1:{self.port}/private"

    @property
    def basic_auth_url(self) -> str:
        """The basic-auth channel with its credentials in the URL."""
        return f"{self.scheme}://{self.user}:{self.password}@127.0.0.1:{self.port}/private"

    @property
    def token_url(self) -> str:
        """The token channel, ``/t/<token>/private`` as anaconda.org spells it."""
        return f"{self.scheme}://127.0.0.1:{self.port}/t/{self.token}/private"

    def start(self) -> ChannelServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, name="conda-channel", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ChannelServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def resolve(self, path: str, authorization: str) -> tuple[int, Path | None]:
        """(HTTP status, file) for a request path."""
        parts = [part for part in path.split("?", 1)[0].split("/") if part]
        if parts[:1] == ["channel"]:
            return self._file(parts[1:])
        if parts[:1] == ["private"]:
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if authorization != f"Basic {expected}":
                return 401, None
            return self._file(parts[1:])
        if parts[:1] == ["t"] and len(parts) > 2 and parts[2] == "private":
            if parts[1] != self.token:
                return 403, None
            return self._file(parts[3:])
        return 404, None

    def _file(self, parts: list[str]) -> tuple[int, Path | None]:
        if any(part in ("..", ".") for part in parts):
            return 404, None
        path = self.root.joinpath(*parts)
        return (200, path) if parts and path.is_file() else (404, None)


def _handler(channel: ChannelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, *, body: bool) -> None:
            authorization = self.headers.get("Authorization", "")
            channel.requests.append(Request(self.path, authorization))
            status, path = channel.resolve(self.path, authorization)
            if path is None:
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="kiln test channel"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            if path.name in channel.tampered:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            self.send_response(200)
            kind = "application/json" if path.suffix == ".json" else "application/octet-stream"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
