"""One test per bug the fuzzers found, against the real runtime behind nginx and without it."""

from __future__ import annotations

import json

import pytest

from tests.server.fuzz.target import FuzzTarget
from tests.server.fuzz.wire import RawRequest, error_shape, problems, send

JSON = (b"Content-Type", b"application/json")
BODY = b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}'
POST = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

# Requests an HTTP parser refuses. nginx answered them with its own HTML pages (and 501/505
# for an unknown Transfer-Encoding or HTTP version: server errors for a client's mistake);
# uvicorn answered text/plain "Invalid HTTP request received." (nginx passes some through).
MALFORMED = {
    "unknown method": b"FOO /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "lowercase method": b"get /ping HTTP/1.1\r\nHost: x\r\n\r\n",
    "CONNECT": b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n",
    "TRACE": b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in target": b"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad percent-escape": b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
    "dot-dot target": b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    "invalid UTF-8 target": b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    "invalid UTF-8 query": b"GET /ping?\xff=%zz HTTP/1.1\r\nHost: x\r\n\r\n",
    "asterisk target": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/9.9": b"GET /ping HTTP/9.9\r\nHost: x\r\n\r\n",
    "binary garbage": b"\x00\x01\x02 garbage\r\n\r\n",
    "header without colon": b"GET /ping HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    "NUL in header": b"GET /ping HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "request line of 20 000 bytes": b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-numeric Content-Length": POST + b"Content-Length: abc\r\n\r\n" + BODY,
    "negative Content-Length": POST + b"Content-Length: -5\r\n\r\n" + BODY,
    "two Content-Lengths": POST + b"Content-Length: 5\r\nContent-Length: 34\r\n\r\n" + BODY,
    "Content-Length and chunked": POST
    + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n22\r\n"
    + BODY
    + b"\r\n0\r\n\r\n",
    "bad chunk size": POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + BODY + b"\r\n0\r\n\r\n",
    "Transfer-Encoding gzip": POST + b"Transfer-Encoding: gzip\r\n\r\n" + BODY,
    # nginx rejected the unknown coding, then checked the body limit on its own error page: HTML 413.
    "Transfer-Encoding identity, body over the limit": POST
    + b"Transfer-Encoding: identity\r\nContent-Length: 100000\r\n\r\n"
    + b"1" * 100000,
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_request_no_parser_accepts_gets_a_json_4xx(target: FuzzTarget, name: str) -> None:
    answer = send(target.host, target.port, RawRequest.exact(MALFORMED[name]))
    assert answer.status is not None, answer.error
    assert 400 <= answer.status < 500, (answer.status, answer.body)
    assert error_shape(answer) == []


def test_json_nested_10000_levels_is_a_bad_request_not_a_model_error(target: FuzzTarget) -> None:
    # It was reported as "an unexpected error while evaluating the model: RecursionError".
    body = b'{"inputs": ' + b"[" * 10000 + b"]" * 10000 + b"}"
    request = RawRequest(b"POST", b"/invocations", (JSON,), body)
    answer = send(target.host, target.port, request)
    assert problems(request, answer) == []
    assert answer.status == 400
    error = json.loads(answer.body)
    assert error["error_code"] == "BAD_REQUEST"
    assert "nested more deeply than the server parses" in error["message"]


def test_an_integer_of_5000_digits_is_invalid_json_not_a_model_error(target: FuzzTarget) -> None:
    # Python refuses to convert integers over 4300 digits; that was reported as a model error.
    body = b'{"inputs": [[' + b"1" * 5000 + b", 3.5, 1.4, 0.2]]}"
    request = RawRequest(b"POST", b"/invocations", (JSON,), body)
    answer = send(target.host, target.port, request)
    assert answer.status == 400
    message = json.loads(answer.body)["message"]
    assert message.startswith("Invalid input. Ensure that input is a valid JSON formatted string.")
    assert "4300 digits" in message


def test_the_server_is_unharmed(target: FuzzTarget) -> None:
    before = target.snapshot()
    for data in MALFORMED.values():
        send(target.host, target.port, RawRequest.exact(data))
    assert target.check(before).problems == []
