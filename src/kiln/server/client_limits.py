"""What a client may send, and how slowly: nginx's limits, kept by the workers when they face clients.

Behind nginx, nginx holds every client connection: it refuses oversized headers
(``large_client_header_buffers``), drops clients that send their headers or body too
slowly (``client_header_timeout``, ``client_body_timeout``), and hands a worker only
whole requests. With ``DISABLE_NGINX=true`` the workers face clients themselves, and
uvicorn's httptools protocol has none of these limits: it keeps reading a header of any
size into memory, and waits forever for a request that arrives a byte at a time.
``limited(protocol, max_header_size=..., client_timeout=...)`` adds them, with the values
nginx gets (the settings ``max_header_size`` and ``client_timeout``), and answers JSON like
the rest of kiln:

* request line and headers larger than ``max_header_size``: 431 ``REQUEST_LIMIT_EXCEEDED``;
* a connection that has not sent a whole request head within ``client_timeout`` of opening
  (or of its request's first byte): 408, then closed;
* a request body with no bytes for ``client_timeout``: 408 (if no answer has started), closed.

Only the uvicorn hooks that httptools itself defines are overridden (``data_received``
and the parser callbacks ``on_message_begin``, ``on_headers_complete``,
``on_message_complete``), plus ``connection_made``/``connection_lost``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kiln import contract
from kiln.server.errors import BAD_REQUEST, REQUEST_LIMIT_EXCEEDED, error_body

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
else:
    _Base = object

MAX_HEADER_BYTES = contract.DEFAULT_MAX_HEADER_SIZE
"""``max_header_size``'s default (nginx's ``large_client_header_buffers 4 8k``): 32 KiB of head."""
HEADER_TIMEOUT = contract.DEFAULT_CLIENT_TIMEOUT
"""``client_timeout``'s default: seconds from connecting (or a request's first byte) to a whole head."""
BODY_TIMEOUT = contract.DEFAULT_CLIENT_TIMEOUT
"""``client_timeout``'s default: seconds a request body may go without a byte arriving."""

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def limited(
    base: Any, *, max_header_size: int = MAX_HEADER_BYTES, client_timeout: float = HEADER_TIMEOUT
) -> Any:
    """A subclass of uvicorn's httptools protocol class ``base`` that keeps the limits above.

    Anything else (``h11``, which has a header limit of its own) is returned unchanged.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn serves with h11
        return base
    if base == "httptools":
        base = HttpToolsProtocol
    if not (isinstance(base, type) and issubclass(base, HttpToolsProtocol)):
        return base
    name = f"Limited{base.__name__}"
    limits = {"max_header_size": max_header_size, "client_timeout": client_timeout, "__qualname__": name}
    return type(name, (_Limits, base), limits)


class _Limits(_Base):
    """The limits, mixed in before uvicorn's ``HttpToolsProtocol`` (or a subclass) by ``limited``."""

    max_header_size: int = MAX_HEADER_BYTES
    client_timeout: float = HEADER_TIMEOUT
    _head_bytes = 0
    _in_head = True
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            if self._timer is not None:  # a body is arriving: restart its idle clock
                self._arm(self._body_timed_out)
            # The next request may start inside this read; its head then gets up to one
            # read (<= 256 KiB) more than the limit, which bounds memory all the same.
            super().data_received(data)
            return
        self._feed_head(data)

    def _feed_head(self, data: bytes) -> None:
        """Feed the head in slices, so that no more than the limit is parsed before refusing."""
        while data and not self.transport.is_closing():
            if not self._in_head:
                super().data_received(data)
                return
            room = self.max_header_size - self._head_bytes
            if room <= 0:
                self._answer(431, _header_too_large(self.max_header_size))
                return
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)

    # --- httptools' parser callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a keep-alive connection's next request
            self._start_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel()
        super().on_headers_complete()
        self._arm(self._body_timed_out)  # on_message_complete ends it

    def on_message_complete(self) -> None:
        self._cancel()
        super().on_message_complete()

    # --- timers and answers ---------------------------------------------------------------
    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._arm(self._head_timed_out)

    def _arm(self, callback: Any) -> None:
        self._cancel()
        self._timer = asyncio.get_running_loop().call_later(self.client_timeout, callback)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._in_head:
            self._answer(408, _timed_out("request head", self.client_timeout))

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # Closing marks the request disconnected: the app's receive() says so, its send() is ignored.
            self._answer(408, _timed_out("request body", self.client_timeout))
        else:
            self.transport.close()

    def _answer(self, status: int, body: bytes) -> None:
        """Write a JSON answer straight to the transport and close the connection."""
        if self.transport.is_closing():
            return
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        head.extend(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers)
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def _header_too_large(limit: int) -> bytes:
    return error_body(
        REQUEST_LIMIT_EXCEEDED, f"the request line and headers are larger than the limit of {limit} bytes"
    )


def _timed_out(what: str, seconds: float) -> bytes:
    return error_body(
        BAD_REQUEST, f"the client sent no complete {what} within {seconds:g} s; connection closed"
    )
