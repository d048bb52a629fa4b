"""Raw HTTP/1.1 requests on their own TCP connection, and what an answer to one must look like.

Raw bytes rather than an HTTP client: the fuzzers send what no well-behaved client
would (odd methods, non-ASCII targets, lying Content-Length, broken chunking, bodies
cut off mid-way), and clients refuse to send those.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass, field

DOCUMENTED_5XX = frozenset({504})
"""The only server-error status the scoring protocol documents: the request timeout."""


@dataclass(frozen=True)
class RawRequest:
    """One request as bytes on the wire."""

    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    content_length: bytes | None = b"auto"
    """The Content-Length header: ``auto`` for the body's length, None for none, else these bytes."""
    chunked: bool = False
    """Send the body with ``Transfer-Encoding: chunked`` (in two chunks)."""
    cut_after: int | None = None
    """Send only this many bytes of the body, then half-close: a client gone mid-upload."""
    raw: bytes | None = None
    """Send exactly these bytes instead (``method`` still tells how to read the answer)."""

    @classmethod
    def exact(cls, data: bytes) -> RawRequest:
        """A request given as its exact bytes."""
        return cls(method=data.split(b" ", 1)[0], target=b"", raw=data)

    @property
    def truncated(self) -> bool:
        return self.cut_after is not None

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        lines = [self.method + b" " + self.target + b" HTTP/1.1", b"Host: fuzz"]
        lines += [name + b": " + value for name, value in self.headers]
        body = self.body
        if self.chunked:
            lines.append(b"Transfer-Encoding: chunked")
            half = len(body) // 2
            parts = [p for p in (body[:half], body[half:]) if p]
            body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        elif self.content_length == b"auto":
            lines.append(b"Content-Length: %d" % len(body))
        elif self.content_length is not None:
            lines.append(b"Content-Length: " + self.content_length)
        if self.cut_after is not None:
            body = body[: self.cut_after]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def describe(self, limit: int = 300) -> str:
        text = repr(self.encode())
        return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


@dataclass(frozen=True)
class Answer:
    """The server's answer; ``status`` None when the connection closed without one."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""


def send(host: str, port: int, request: RawRequest, timeout: float = 30.0) -> Answer:
    """Send ``request`` on a fresh connection and read one answer (1xx interim answers skipped)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(request.encode())
            if request.truncated:
                sock.shutdown(socket.SHUT_WR)
        except OSError as exc:  # the server may close early (e.g. a 413 before the whole body)
            sent_error = f"{type(exc).__name__}: {exc}"
        else:
            sent_error = ""
        method = request.method.decode("latin-1")
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            body = response.read()
        except TimeoutError:
            return Answer(None, error=f"no answer within {timeout} s")
        except (http.client.HTTPException, OSError) as exc:  # closed, reset, or not HTTP at all
            return Answer(None, error=sent_error or f"{type(exc).__name__}: {exc}")
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, headers, body)


def problems(request: RawRequest, answer: Answer) -> list[str]:
    """What is wrong with ``answer`` to ``request``, by the scoring protocol's promises."""
    if answer.status is None:
        if request.truncated:
            return []  # the client left: no answer is owed
        return [f"no answer: {answer.error}"]
    found = []
    status = answer.status
    if status >= 500 and status not in DOCUMENTED_5XX:
        found.append(f"server error {status}")
    if status >= 400 and request.method != b"HEAD":
        v2 = request.target == b"/v2" or request.target.startswith(b"/v2/")
        found += error_shape(answer, v2=v2)
        timeout_code = None if found or v2 else json.loads(answer.body)["error_code"]
        if status == 504 and timeout_code not in (None, "DEADLINE_EXCEEDED"):
            found.append("504 without error_code DEADLINE_EXCEEDED")
    return [f"{p}: {answer.body[:300]!r}" for p in found]


def error_shape(answer: Answer, *, v2: bool = False) -> list[str]:
    """Problems with an error answer's body: it must be ``{"error_code": str, "message": str, ...}``
    (``v2``: the Open Inference Protocol's ``{"error": str}``)."""
    content_type = answer.headers.get("content-type", "")
    if not content_type.startswith("application/json"):
        return [f"{answer.status} with Content-Type {content_type!r}, not application/json"]
    try:
        body = json.loads(answer.body)
    except ValueError:
        return [f"{answer.status} whose body is not JSON"]
    if not isinstance(body, dict):
        return [f"{answer.status} whose JSON is not an object"]
    if v2:
        return [] if isinstance(body.get("error"), str) else [f"{answer.status} without a string error"]
    if not isinstance(body.get("error_code"), str) or not isinstance(body.get("message"), str):
        return [f"{answer.status} without string error_code and message"]
    return []
