"""Clients that misbehave on purpose, over raw sockets: huge heads, endless bodies, slow and idle ones.

Used by tests/runtime/test_limits.py and bench/reliability/limits.py.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as read off the socket (``status`` 0: the server closed without one)."""

    status: int
    headers: dict[str, str]
    body: bytes


def read_answer(sock: socket.socket, timeout: float = 30.0) -> Answer:
    """One answer with a Content-Length body; status 0 if the connection closes before a head."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return Answer(0, {}, data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def send_head(port: int, head: bytes) -> Answer:
    """Send a request head (whatever its size) and read the answer."""
    with connect(port) as sock:
        with contextlib.suppress(OSError):  # the server may refuse and close before reading it all
            sock.sendall(head)
        return read_answer(sock)


def head_with_header(size: int, path: str = "/ping") -> bytes:
    """A GET whose one extra header's value is ``size`` bytes long."""
    return f"GET {path} HTTP/1.1\r\nHost: kiln\r\nX-Padding: ".encode() + b"a" * size + b"\r\n\r\n"


@dataclass(frozen=True)
class Streamed:
    """What an endless request body got: bytes sent before the answer came, and the answer."""

    sent: int
    answer: Answer


def stream_body(port: int, *, budget: int, chunked: bool, chunk_size: int = 64 * 1024) -> Streamed:
    """POST a JSON body of up to ``budget`` bytes in ``chunk_size`` pieces until the server answers.

    ``chunked``: Transfer-Encoding chunked, no Content-Length (the server cannot know the
    size up front); otherwise the Content-Length says ``budget``.
    """
    framing = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {budget}".encode()
    head = b"POST /invocations HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\n" + framing
    piece = b" " * chunk_size
    frame = f"{chunk_size:x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    sent = 0
    pending = memoryview(b"")
    with connect(port) as sock:
        sock.sendall(head + b"\r\n\r\n")
        sock.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while sent < budget or pending:
                events = selector.select(timeout=30)
                if not events or any(mask & selectors.EVENT_READ for _, mask in events):
                    break  # an answer (or a close) came before the body ended
                if not pending:
                    pending = memoryview(frame)
                try:
                    pending = pending[sock.send(pending) :]
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    break
                if not pending:
                    sent += chunk_size
        sock.setblocking(True)
        return Streamed(sent, read_answer(sock))


@dataclass
class Trickled:
    """What happened to each kind of slow connection: how many, and when the server closed each."""

    opened: dict[str, int] = field(default_factory=dict)
    closed_after: dict[str, list[float]] = field(default_factory=dict)
    answers: dict[str, list[int]] = field(default_factory=dict)
    """Status codes the server sent before closing (0: closed without an answer)."""

    def still_open(self, kind: str) -> int:
        return self.opened.get(kind, 0) - len(self.closed_after.get(kind, []))


SLOW_HEAD = b"POST /invocations HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\n" + (
    b"X-Padding: " + b"a" * 400 + b"\r\n"
)
"""Never finished: sent a byte per round, it lasts ~450 rounds."""
SLOW_BODY_HEAD = (
    b"POST /invocations HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\n"
    b"Content-Length: 50000\r\n\r\n"
)


class Slowloris:
    """Connections that hold a server's attention without finishing a request.

    Kinds: ``head`` sends its request head a byte per round; ``body`` sends a whole head,
    then its body a byte per round; ``silent_body`` sends a head and then nothing; ``idle``
    connects and sends nothing. One background thread drives them all and notes when the
    server closes each one (and what it answered first).
    """

    def __init__(self, port: int, *, interval: float = 0.5, **counts: int) -> None:
        self.port = port
        self.interval = interval
        self.counts = counts
        self.result = Trickled()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)
        self._socks: dict[socket.socket, tuple[str, bytes, int]] = {}

    def start(self) -> Slowloris:
        for kind, count in self.counts.items():
            self.result.opened[kind] = count
            self.result.closed_after[kind] = []
            self.result.answers[kind] = []
            for _ in range(count):
                sock = connect(self.port)
                if kind == "head":
                    todo = SLOW_HEAD
                elif kind == "body":
                    sock.sendall(SLOW_BODY_HEAD)
                    todo = b"{" + b" " * 49_998 + b"}"
                elif kind == "silent_body":
                    sock.sendall(SLOW_BODY_HEAD)
                    todo = b""
                else:
                    todo = b""
                sock.setblocking(False)
                self._socks[sock] = (kind, todo, 0)
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and self._socks:
            for sock, (kind, todo, done) in list(self._socks.items()):
                if self._closed_by_server(sock, kind):
                    continue
                if done < len(todo):
                    with contextlib.suppress(BlockingIOError):
                        sock.send(todo[done : done + 1])
                        self._socks[sock] = (kind, todo, done + 1)
            self._stop.wait(self.interval)

    def _closed_by_server(self, sock: socket.socket, kind: str) -> bool:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0
        self.result.answers[kind].append(status)
        self.result.closed_after[kind].append(time.monotonic() - self.started)
        del self._socks[sock]
        sock.close()
        return True

    def stop(self) -> Trickled:
        self._stop.set()
        self._thread.join(10)
        for sock in self._socks:
            sock.close()
        self._socks.clear()
        return self.result


@contextlib.contextmanager
def slowloris(port: int, *, interval: float = 0.5, **counts: int) -> Iterator[Slowloris]:
    attack = Slowloris(port, interval=interval, **counts).start()
    try:
        yield attack
    finally:
        attack.stop()


def idle_keepalive_connections(port: int, count: int, request: bytes) -> list[socket.socket]:
    """``count`` connections that each made one request (answered, kept alive) and then go quiet."""
    socks = []
    try:
        for _ in range(count):
            sock = connect(port)
            socks.append(sock)
            sock.sendall(request)
        for sock in socks:
            answer = read_answer(sock)
            if answer.status != 200:
                raise AssertionError(
                    f"the request before going idle got {answer.status}: {answer.body[:200]!r}"
                )
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def still_open(sock: socket.socket) -> bool:
    """True if the server has not closed ``sock`` (nothing to read, no EOF)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # EOF, or an answer nobody asked for: the server is closing it
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False
