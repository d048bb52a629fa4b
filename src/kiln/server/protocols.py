"""uvicorn's HTTP protocols, answering a request their parser refuses with kiln's JSON 400.

uvicorn answers bytes that are not valid HTTP/1.1 (an unknown method, a bad header, broken
chunked framing, non-ASCII in the request target) with a ``text/plain`` 400 of its own,
before the app ever sees the request. Behind nginx most of these never reach a worker, but
some do (nginx passes methods and bytes uvicorn's parser rejects), and with
``DISABLE_NGINX=true`` all of them do. Every error a client gets is JSON, so the protocols
here override only that answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kiln.server.errors import BAD_REQUEST, error_body

INVALID_REQUEST_MESSAGE = (
    "malformed HTTP request (request line, headers or body framing); the server's HTTP parser refused it"
)


def _json_400(protocol: Any) -> None:
    body = error_body(BAD_REQUEST, INVALID_REQUEST_MESSAGE)
    head = [b"HTTP/1.1 400 Bad Request\r\n"]
    for name, value in protocol.server_state.default_headers:
        head.append(name + b": " + value + b"\r\n")
    head.append(b"content-type: application/json\r\n")
    head.append(b"content-length: " + str(len(body)).encode("ascii") + b"\r\n")
    head.append(b"connection: close\r\n\r\n")
    protocol.transport.write(b"".join(head) + body)
    protocol.transport.close()


def http_protocol(name: str) -> type[asyncio.Protocol]:
    """uvicorn's protocol class for ``name`` (``httptools`` or ``h11``) with JSON parse errors."""
    if name == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        class JsonHttpToolsProtocol(HttpToolsProtocol):
            def send_400_response(self, msg: str) -> None:
                _json_400(self)

        return JsonHttpToolsProtocol
    if name == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        class JsonH11Protocol(H11Protocol):
            def send_400_response(self, msg: str) -> None:
                _json_400(self)

        return JsonH11Protocol
    raise ValueError(f"unknown uvicorn HTTP implementation {name!r} (expected httptools or h11)")
