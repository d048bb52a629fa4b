"""Property-based fuzzing with hypothesis: generated raw requests, each answer judged on the wire.

``requests(columns)`` draws whole HTTP requests: mostly ``POST /invocations``, also odd
methods and targets; Content-Types valid, wrong, with foreign charsets, garbage or none;
bodies that are random JSON (written as text, so it can hold ``NaN``, ``1e400`` or a
5000-digit integer), protocol-shaped JSON near what the model accepts, nesting up to
20 000 levels, bodies around the body limit, CSV, random bytes; then maybe invalid UTF-8 spliced in, a lying
Content-Length, chunked framing, or the upload cut off mid-way. ``run_generated`` sends
``examples`` of them, plus the explicit cases the hardening issue names, and judges
every answer with ``wire.problems``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.server.fuzz.report import FuzzReport
from tests.server.fuzz.target import FuzzTarget
from tests.server.fuzz.wire import RawRequest, problems, send

FORMAT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
OTHER_KEYS = ("params", "columns", "data", "index", "messages", "prompt", "input")
ODD_NUMBERS = (
    "1e400",
    "-1e400",
    "1e-400",
    "1" + "0" * 5000,  # 10**5000 as a literal
    "-" + "9" * 4301,
    "18446744073709551616",
    "-9223372036854775809",
    "NaN",
    "Infinity",
    "-Infinity",
    "-0.0",
    "0e0",
    "1E+308",
)
ODD_LITERALS = (*ODD_NUMBERS, '"\\ud800"', '"\\u0000"', '""', "true", "false", "null", "[]", "{}")
CONTENT_TYPES = (
    b"application/json",
    b"application/json; charset=utf-8",
    b"APPLICATION/JSON; CHARSET=UTF-8",
    b'application/json;charset="utf-8"',
    b"application/json; charset=latin-1",
    b"application/json; charset=utf-16",
    b"application/json; foo=bar",
    b"application/json;",
    b"application/json, text/csv",
    b"text/csv",
    b"text/csv; charset=utf-8",
    b"application/vnd.apache.parquet",
    b"text/plain",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=x",
    b"application/octet-stream",
    b"*/*",
    b"",
    b"\xff\xfe",
)
TARGETS = (
    b"/ping",
    b"/health",
    b"/version",
    b"/metrics",
    b"/openapi.json",
    b"/docs",
    b"/",
    b"/invocations/",
    b"//invocations",
    b"/INVOCATIONS",
    b"/invocations?format=pandas-split",
    b"/invocations?\xff=%zz",
    b"/invocations#fragment",
    b"/%ff%fe",
    b"/\xff",
    b"/../../etc/passwd",
    b"/%2e%2e/%2e%2e/etc/passwd",
    b"*",
    b"http://elsewhere/invocations",
    b"/" + b"a" * 9000,
)
METHODS = (b"POST",) * 12 + (
    b"GET",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"PATCH",
    b"OPTIONS",
    b"TRACE",
    b"FOO",
    b"post",
)
EXTRA_HEADERS = (
    (b"Expect", b"100-continue"),
    (b"Content-Encoding", b"gzip"),
    (b"Connection", b"close"),
    (b"Connection", b"upgrade"),
    (b"Upgrade", b"websocket"),
    (b"Upgrade", b"h2c"),
    (b"Accept", b"text/csv"),
    (b"Accept-Charset", b"latin-1"),
    (b"X-Forwarded-For", b"not-an-address"),
    (b"Content-Type", b"text/csv"),
    (b"Transfer-Encoding", b"identity"),
    (b"X-Long", b"x" * 10000),
)
INVALID_UTF8 = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xc0\xaf")


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"


def json_text(columns: Sequence[str]) -> st.SearchStrategy[str]:
    """Any JSON value as text, odd numbers and the model's column names included."""
    keys = st.one_of(st.text(max_size=8), st.sampled_from([*columns, *FORMAT_KEYS, *OTHER_KEYS])).map(
        json.dumps
    )
    scalars = st.one_of(
        st.sampled_from(ODD_LITERALS),
        st.integers().map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.text(max_size=20).map(lambda t: json.dumps(t, ensure_ascii=False)),
        st.sampled_from(list(columns)).map(json.dumps),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=6).map(_array),
            st.lists(st.tuples(keys, inner), max_size=6).map(_object),
        ),
        max_leaves=15,
    )


def _numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.integers(-(10**20), 10**20).map(str),
        st.sampled_from(ODD_LITERALS),
    )


def near_valid(columns: Sequence[str]) -> st.SearchStrategy[str]:
    """Protocol-shaped bodies close to what the model accepts: the right keys, odd values."""
    names = st.tuples(
        st.permutations(list(columns)), st.sampled_from(["all", "all", "one less", "one more"])
    ).map(
        lambda oc: oc[0][1:] if oc[1] == "one less" else [*oc[0], "extra"] if oc[1] == "one more" else oc[0]
    )

    def split(order: list[str]) -> st.SearchStrategy[str]:
        rows = st.lists(
            st.lists(_numbers(), min_size=len(order), max_size=len(order) + 1).map(_array), max_size=5
        )
        cols = _array([json.dumps(c) for c in order])
        return rows.map(lambda r: f'{{"dataframe_split": {{"columns": {cols}, "data": {_array(r)}}}}}')

    def records(order: list[str]) -> st.SearchStrategy[str]:
        record = st.lists(_numbers(), min_size=len(order), max_size=len(order)).map(
            lambda values: _object([(json.dumps(c), v) for c, v in zip(order, values)])
        )
        return st.lists(record, max_size=5).map(lambda rs: f'{{"dataframe_records": {_array(rs)}}}')

    def tensors(key: str) -> st.SearchStrategy[str]:
        row = st.lists(_numbers(), min_size=0, max_size=len(columns) + 1).map(_array)
        return st.lists(row, max_size=5).map(lambda rows: f'{{"{key}": {_array(rows)}}}')

    params = st.one_of(st.just(""), json_text(columns).map(lambda p: f', "params": {p}'))
    shaped = st.one_of(
        names.flatmap(split),
        names.flatmap(records),
        st.sampled_from(["instances", "inputs"]).flatmap(tensors),
    )
    return st.tuples(shaped, params).map(lambda sp: sp[0][:-1] + sp[1] + "}")


def deep(levels: int, key: str = "inputs") -> bytes:
    return f'{{"{key}": '.encode() + b"[" * levels + b"1" + b"]" * levels + b"}"


def bodies(columns: Sequence[str]) -> st.SearchStrategy[bytes]:
    text = st.one_of(
        near_valid(columns),
        st.tuples(st.sampled_from([*FORMAT_KEYS, *OTHER_KEYS]), json_text(columns)).map(
            lambda kv: f'{{"{kv[0]}": {kv[1]}}}'
        ),
        json_text(columns),
        st.lists(
            st.lists(st.sampled_from([*columns, "1", "x", "", '"', "1e400", "NaN", "\x00"]), max_size=5),
            max_size=5,
        ).map(lambda rows: "\n".join(",".join(r) for r in rows)),
    ).map(lambda t: t.encode("utf-8"))
    nested = st.tuples(st.integers(1, 20000), st.sampled_from(FORMAT_KEYS)).map(lambda lk: deep(*lk))
    # Around the test servers' 64 KiB body limit: just under it, and over it (413).
    large = st.integers(30_000, 120_000).map(lambda n: b'{"inputs": [' + b"1.5," * (n // 4) + b"1]}")
    return st.one_of(text, text, text, nested, large, st.binary(max_size=300), st.just(b""))


@st.composite
def mutated(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` as is, or with invalid UTF-8 spliced in, cut short, or re-encoded."""
    how = draw(st.sampled_from(["as is"] * 4 + ["invalid utf-8", "cut", "bom", "utf-16"]))
    if how == "invalid utf-8":
        at = draw(st.integers(0, len(body)))
        return body[:at] + draw(st.sampled_from(INVALID_UTF8)) + body[at:]
    if how == "cut":
        return body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    if how == "bom":
        return b"\xef\xbb\xbf" + body
    if how == "utf-16":
        return body.decode("utf-8", "replace").encode("utf-16")
    return body


def requests(columns: Sequence[str]) -> st.SearchStrategy[RawRequest]:
    """Raw HTTP requests, mostly aimed at ``POST /invocations`` (the strategies are built once)."""
    targets = st.one_of(*[st.just(b"/invocations")] * 6, st.sampled_from(TARGETS))
    content_types = st.one_of(
        st.sampled_from(CONTENT_TYPES),
        st.none(),
        st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b),
    )
    extra_headers = st.lists(st.sampled_from(EXTRA_HEADERS), max_size=2, unique=True)
    payloads = bodies(columns).flatmap(mutated)
    framings = st.sampled_from(["auto"] * 6 + ["none", "garbage", "short", "chunked", "cut upload"])

    @st.composite
    def one(draw: st.DrawFn) -> RawRequest:
        method, target = draw(st.sampled_from(METHODS)), draw(targets)
        content_type = draw(content_types)
        headers = ([(b"Content-Type", content_type)] if content_type is not None else []) + draw(
            extra_headers
        )
        return _framed(draw, RawRequest(method, target, tuple(headers), draw(payloads)), draw(framings))

    return one()


def _framed(draw: st.DrawFn, request: RawRequest, framing: str) -> RawRequest:
    """``request`` with its body framed honestly (``auto``), or not."""
    size = len(request.body)
    if framing == "none":
        return replace(request, content_length=None)
    if framing == "garbage":
        garbage = draw(st.sampled_from([b"-1", b"abc", b"99999999999999999999", b"1e3", b"0x10"]))
        return replace(request, content_length=garbage)
    if framing == "short":
        return replace(request, content_length=str(draw(st.integers(0, max(size - 1, 0)))).encode())
    if framing == "chunked":
        return replace(request, chunked=True)
    if framing == "cut upload":
        return replace(request, body=request.body + b" ", cut_after=draw(st.integers(0, size)))
    return request


def explicit_cases(columns: Sequence[str]) -> list[RawRequest]:
    """What the hardening issue names, always tried: deep nesting, huge numbers, NaN, bad bytes."""
    json_header = ((b"Content-Type", b"application/json"),)
    split = '{{"dataframe_split": {{"columns": {}, "data": [[{}]]}}}}'
    cols = json.dumps(list(columns))

    def row(value: str) -> bytes:
        return split.format(cols, ", ".join([value] * len(columns))).encode()

    payloads = [
        deep(10000),
        deep(10000, "dataframe_split"),
        b"[" * 10000 + b"]" * 10000,
        row("1e400"),
        row("1" + "0" * 5000),
        row("NaN"),
        row("Infinity"),
        b'{"inputs": "\xff\xfe"}',
        row('"\\ud800"'),
    ]
    cases = [RawRequest(b"POST", b"/invocations", json_header, body) for body in payloads]
    cases.append(RawRequest(b"POST", b"/invocations", json_header, row("1.0"), cut_after=10))
    cases.append(
        RawRequest(b"POST", b"/invocations", ((b"Content-Type", b"text/csv; charset=latin-1"),), b"a\n1")
    )
    return cases


def run_generated(target: FuzzTarget, columns: Sequence[str], examples: int) -> FuzzReport:
    """Send the explicit cases and ``examples`` generated requests; judge each answer and the server."""
    mode = "behind nginx" if target.nginx else "uvicorn alone"
    report = FuzzReport(f"hypothesis ({mode})")
    before = target.snapshot()

    def judge(request: RawRequest) -> None:
        answer = send(target.host, target.port, request)
        report.record(answer.status, problems(request, answer), request.describe())

    for case in explicit_cases(columns):
        judge(case)
    fuzz = _fuzzer(columns, examples, judge)
    fuzz()
    return report.finish(target.check(before))


def _fuzzer(columns: Sequence[str], examples: int, judge: Callable[[RawRequest], None]) -> Callable[[], None]:
    config = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )

    @config
    @given(request=requests(columns))
    def fuzz(request: RawRequest) -> None:
        judge(request)

    fixed = os.environ.get("KILN_FUZZ_SEED")
    return seed(int(fixed))(fuzz) if fixed else fuzz
