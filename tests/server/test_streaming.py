"""Streaming: ``"stream": true`` answers server-sent events, read the way MLflow's client reads them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from kiln.server import wording
from kiln.server.app import create_app
from kiln.server.streaming import NOT_STREAMABLE
from kiln.settings import RuntimeSettings
from tests.server.serving import ProcessServer, ThreadServer, wait_until
from tests.server.sse import DONE, PARAMS, events, save_stream_model


@pytest.fixture(scope="module")
def stream_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_stream_model(tmp_path_factory.mktemp("models") / "stream")


@pytest.fixture(scope="module")
def url(stream_model: Path) -> Iterator[str]:
    server = ThreadServer(create_app(RuntimeSettings(model_dir=str(stream_model)))).start()
    yield server.url + "/invocations"
    server.stop()


def post(url: str, body: dict[str, Any], timeout: float = 30) -> requests.Response:
    return requests.post(url, json=body, stream=True, timeout=timeout)


def test_stream_answers_one_event_per_chunk_then_done(url: str) -> None:
    response = post(url, {"prompt": "hi", "chunks": 3, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["cache-control"] == "no-cache"
    assert "content-length" not in response.headers
    assert list(events(response)) == [
        {"index": 0, "text": "hi0"},
        {"index": 1, "text": "hi1"},
        {"index": 2, "text": "hi2"},
        DONE,
    ]


def test_the_raw_bytes_are_data_lines_and_blank_lines(url: str) -> None:
    raw = post(url, {"prompt": "a", "chunks": 2, "stream": True}).content
    assert raw == (b'data: {"index":0,"text":"a0"}\n\ndata: {"index":1,"text":"a1"}\n\ndata: [DONE]\n\n')


def test_format_keys_and_params_stream_too(url: str) -> None:
    body = {"dataframe_records": [{"prompt": "r"}], "params": {"chunks": 2}, "stream": True}
    assert list(events(post(url, body))) == [{"index": 0, "text": "r0"}, {"index": 1, "text": "r1"}, DONE]


def test_an_empty_stream_is_just_done(url: str) -> None:
    assert list(events(post(url, {"prompt": "x", "chunks": 0, "stream": True}))) == [DONE]


def test_without_stream_true_the_answer_is_whole(url: str) -> None:
    for body in ({"prompt": "w", "chunks": 2}, {"prompt": "w", "chunks": 2, "stream": False}):
        response = requests.post(url, json=body, timeout=30)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == ["w0", "w1"]


def test_events_arrive_as_the_model_produces_them(url: str) -> None:
    response = post(url, {"prompt": "t", "chunks": 3, "delay": 0.6, "stream": True})
    started = time.monotonic()
    arrivals = [time.monotonic() - started for _ in events(response)]
    assert len(arrivals) == 4
    # each chunk came when the model made it, 0.6 s apart, not all together at the end
    assert arrivals[1] - arrivals[0] > 0.4 and arrivals[2] - arrivals[1] > 0.4


def test_a_failure_before_the_first_chunk_is_the_json_error(url: str) -> None:
    response = requests.post(url, json={"prompt": "f", "fail_at": 0, "stream": True}, timeout=30)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error_code"] == "BAD_REQUEST"
    assert body["error_class"] == "INVALID_PARAMETER_VALUE" and body["sqlstate"] == "KAM00"
    assert body["message"].startswith(wording.PREDICT_FAILED)
    assert "the model failed at chunk 0" in body["message"]


def test_a_failure_mid_stream_is_a_final_error_event(url: str) -> None:
    received = list(events(post(url, {"prompt": "m", "chunks": 5, "fail_at": 2, "stream": True})))
    assert received[:2] == [{"index": 0, "text": "m0"}, {"index": 1, "text": "m1"}]
    error = received[2]
    assert error["error_code"] == "BAD_REQUEST"
    assert error["error_class"] == "INVALID_PARAMETER_VALUE" and error["sqlstate"] == "KAM00"
    assert "ValueError: the model failed at chunk 2" in error["message"]
    assert error["error"] == error["message"]  # the key MLflow's agent server sends
    assert "stack_trace" not in error
    assert received[3:] == [DONE]


def test_a_client_that_disconnects_stops_the_generation(url: str, tmp_path: Path) -> None:
    record = tmp_path / "produced.txt"
    body = {"prompt": "d", "chunks": 1000, "delay": 0.05, "record": str(record), "stream": True}
    response = post(url, body)
    stream = events(response)
    assert [next(stream) for _ in range(3)] == [{"index": i, "text": f"d{i}"} for i in range(3)]
    response.close()  # the client goes away mid-stream
    assert wait_until(lambda: "closed" in record.read_text(), timeout=10), record.read_text()
    produced = record.read_text().splitlines()
    assert produced[-1] == "closed"  # the generator was closed: its finally block ran
    chunks = len(produced) - 1
    assert 3 <= chunks < 20, produced  # about one more chunk than the client read, not 1000
    time.sleep(0.5)
    assert len(record.read_text().splitlines()) == chunks + 1  # and nothing was produced since
    # the worker goes on serving
    assert list(events(post(url, {"prompt": "n", "chunks": 1, "stream": True}))) == [
        {"index": 0, "text": "n0"},
        DONE,
    ]


def test_other_requests_are_served_between_chunks(url: str) -> None:
    finished: dict[str, float] = {}
    started = time.monotonic()

    def slow_stream() -> list[Any]:
        received = list(events(post(url, {"prompt": "s", "chunks": 5, "delay": 0.4, "stream": True})))
        finished["stream"] = time.monotonic() - started
        return received

    with ThreadPoolExecutor(1) as pool:
        streamed = pool.submit(slow_stream)
        time.sleep(0.3)
        answer = requests.post(url, json={"prompt": "u", "chunks": 1}, timeout=30)
        finished["whole"] = time.monotonic() - started
        assert len(streamed.result()) == 6
    assert answer.json() == ["u0"]
    assert finished["whole"] < finished["stream"] - 0.8  # not queued behind the whole stream


def test_a_model_without_predict_stream_answers_400(model_dir: Callable[[str], Path]) -> None:
    server = ThreadServer(create_app(RuntimeSettings(model_dir=str(model_dir("llm_echo"))))).start()
    try:
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        response = requests.post(server.url + "/invocations", json=body, timeout=30)
    finally:
        server.stop()
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert error["error_code"] == "BAD_REQUEST"
    assert error["error_class"] == "INVALID_PARAMETER_VALUE" and error["sqlstate"] == "KAM00"
    assert error["message"].startswith(NOT_STREAMABLE)
    assert "streamable" in error["message"] and "predict_stream" in error["message"]


def test_a_model_whose_signature_names_stream_gets_it_as_input(tmp_path: Path) -> None:
    """Not streamable, but ``stream`` is one of its params: MLflow's scoring server passes it on."""
    model = save_stream_model(tmp_path / "named", streamable=False, params={**PARAMS, "stream": False})
    server = ThreadServer(create_app(RuntimeSettings(model_dir=str(model)))).start()
    try:
        response = requests.post(
            server.url + "/invocations", json={"prompt": "p", "chunks": 2, "stream": True}, timeout=30
        )
    finally:
        server.stop()
    assert response.status_code == 200
    assert response.json() == ["p0", "p1"]


def test_no_first_chunk_within_the_request_timeout_is_504(stream_model: Path, tmp_path: Path) -> None:
    server = ProcessServer(stream_model, {"KILN_REQUEST_TIMEOUT": "1"}, tmp_path / "server.log").start()
    try:
        started = time.monotonic()
        response = requests.post(
            server.url + "/invocations", json={"prompt": "x", "first_delay": 4, "stream": True}, timeout=30
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 504
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error_code"] == "DEADLINE_EXCEEDED"
        assert response.json()["message"].startswith(wording.TIMEOUT)
        assert elapsed < 3
        # the stuck generation makes the worker retire, as a stuck predict does
        assert wait_until(lambda: server.proc.poll() is not None, timeout=15), server.read_log()
    finally:
        server.stop()


def test_a_chunk_that_does_not_come_within_the_timeout_ends_the_stream(
    stream_model: Path, tmp_path: Path
) -> None:
    server = ProcessServer(stream_model, {"KILN_REQUEST_TIMEOUT": "1"}, tmp_path / "server.log").start()
    try:
        body = {"prompt": "y", "chunks": 3, "delay": 4, "stream": True}
        started = time.monotonic()
        received = list(events(post(server.url + "/invocations", body)))
        elapsed = time.monotonic() - started
        assert received[0] == {"index": 0, "text": "y0"}
        assert received[1]["error_code"] == "DEADLINE_EXCEEDED"
        assert received[1]["message"].startswith(wording.TIMEOUT)
        assert "next chunk" in received[1]["message"]
        assert received[2:] == [DONE]
        assert elapsed < 3
    finally:
        server.stop()


def test_streams_keep_the_queue_limit(stream_model: Path) -> None:
    settings = RuntimeSettings(model_dir=str(stream_model), max_queue=1)
    server = ThreadServer(create_app(settings)).start()
    try:
        url = server.url + "/invocations"
        first = post(url, {"prompt": "q", "chunks": 3, "delay": 0.5, "stream": True})
        stream = events(first)
        assert next(stream) == {"index": 0, "text": "q0"}
        refused = requests.post(url, json={"prompt": "r", "chunks": 1}, timeout=30)
        assert refused.status_code == 503
        assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert len(list(stream)) == 3  # two more chunks and DONE
    finally:
        server.stop()


def test_many_concurrent_streams(url: str) -> None:
    def one(n: int) -> list[Any]:
        return list(events(post(url, {"prompt": f"c{n}-", "chunks": 4, "delay": 0.01, "stream": True})))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    for n, received in enumerate(results):
        assert received == [*({"index": i, "text": f"c{n}-{i}"} for i in range(4)), DONE]


def test_the_openapi_document_describes_the_stream(url: str) -> None:
    import jsonschema_rs
    import schemathesis

    document = requests.get(url.replace("/invocations", "/openapi.json"), timeout=30).json()
    operation = document["paths"]["/invocations"]["post"]
    answer = operation["responses"]["200"]["content"]
    assert set(answer) == {"application/json", "text/event-stream"}
    assert "data: [DONE]" in answer["text/event-stream"]["schema"]["description"]
    assert "no predict_stream" not in operation["responses"]["400"]["description"]
    schemas = document["components"]["schemas"]
    for name in ("ChatRequest", "DataframeRecordsRequest", "InputsRequest"):
        assert schemas[name]["properties"]["stream"]["type"] == "boolean"
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.Draft202012Validator({**body, "components": document["components"]})
    asked = {"prompt": "hi", "chunks": 2, "stream": True}
    assert validator.is_valid(asked)
    assert list(events(post(url, asked))) == [{"index": 0, "text": "hi0"}, {"index": 1, "text": "hi1"}, DONE]
    assert [op.ok() for op in schemathesis.openapi.from_dict(document).get_all_operations()]


@contextlib.contextmanager
def served_from_code(tmp_path: Path, code: str) -> Iterator[str]:
    """The model of ``tests/server/<code>`` (models from code), served; its /invocations URL."""
    import mlflow
    import mlflow.pyfunc

    model = tmp_path / "model"
    mlflow.pyfunc.save_model(
        str(model),
        python_model=str(Path(__file__).parent / code),
        pip_requirements=[f"mlflow=={mlflow.__version__}"],
    )
    server = ThreadServer(create_app(RuntimeSettings(model_dir=str(model)))).start()
    try:
        yield server.url + "/invocations"
    finally:
        server.stop()


def test_a_chat_model_streams_its_chunks(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "hello streaming world"}]
    with served_from_code(tmp_path, "chat_stream_model.py") as url:
        received = list(events(post(url, {"messages": messages, "max_tokens": 5, "stream": True})))
        whole = requests.post(url, json={"messages": messages, "stream": False}, timeout=30).json()
    assert received[-1] == DONE
    chunks = received[:-1]
    assert [chunk["object"] for chunk in chunks] == ["chat.completion.chunk"] * 3
    assert [chunk["choices"][0]["delta"]["content"] for chunk in chunks] == ["hello", "streaming", "world"]
    assert whole["choices"][0]["message"]["content"] == "hello streaming world"


def test_a_responses_agent_streams_its_events(tmp_path: Path) -> None:
    body = {"input": [{"role": "user", "content": "hello agent"}]}
    with served_from_code(tmp_path, "responses_stream_model.py") as url:
        received = list(events(post(url, {**body, "stream": True})))
        whole = requests.post(url, json=body, timeout=30).json()
    assert received[:2] == [
        {"type": "response.output_text.delta", "item_id": "msg-1", "delta": "hello"},
        {"type": "response.output_text.delta", "item_id": "msg-1", "delta": "agent"},
    ]
    assert received[2]["type"] == "response.output_item.done"
    assert received[2]["item"]["content"][0]["text"] == "hello agent"
    assert received[3:] == [DONE]
    assert whole["output"][0]["content"][0]["text"] == "hello agent"


def test_streams_bypass_micro_batching(stream_model: Path) -> None:
    """With batching on, a stream request still streams, and whole requests next to it are answered."""
    settings = RuntimeSettings(model_dir=str(stream_model), max_batch_size=8, max_batch_delay=20)
    server = ThreadServer(create_app(settings)).start()
    try:
        url = server.url + "/invocations"
        with ThreadPoolExecutor(4) as pool:
            streamed = pool.submit(
                lambda: list(events(post(url, {"prompt": "b", "chunks": 3, "stream": True})))
            )
            whole = list(
                pool.map(
                    lambda n: requests.post(url, json={"prompt": f"w{n}", "chunks": 1}, timeout=30), range(3)
                )
            )
        assert streamed.result() == [*({"index": i, "text": f"b{i}"} for i in range(3)), DONE]
        assert [answer.json() for answer in whole] == [["w00"], ["w10"], ["w20"]]
    finally:
        server.stop()
