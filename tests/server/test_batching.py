"""Micro-batching on vs off: byte-identical answers for every request shape, good and bad, sent at once.

Each model is served twice by real processes over real HTTP: unbatched (the reference) and with
``KILN_MAX_BATCH_SIZE=16`` and a 20 ms delay, so that requests sent together do form batches
(the batch-size histogram in ``/metrics`` proves it). Every case of ``tests/server/cases.py`` for
the model is sent to the unbatched server alone, then all of them, several times each and
shuffled, to the batching server from concurrent clients: status, Content-Type and body bytes
must be the same.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiln.api.options import RecipeOptions, runtime_environment, runtime_labels
from kiln.errors import UsageError
from kiln.server.batching import split_rows
from kiln.settings import RuntimeSettings
from tests.server.cases import BAD, GOOD, IRIS_COLUMNS, MISSING_CONTENT_TYPE, Case
from tests.server.serving import ProcessServer

pytestmark = pytest.mark.slow

BATCHING = {"KILN_MAX_BATCH_SIZE": "16", "KILN_MAX_BATCH_DELAY": "100"}
"""100 ms: wide enough that concurrent requests meet in a batch on a busy machine (at 20 ms, six
slow_predict requests from 16 client threads once reached the worker one by one during a CI run)."""
SAME = {"PYTHONHASHSEED": "0"}  # MLflow prints sets of names: the same order in both processes
MODELS = sorted({case.model for case in [*GOOD, *BAD]})
Answer = tuple[int, str, bytes]


@pytest.fixture(scope="module")
def servers(
    model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], tuple[str, str]]]:
    """``servers("sklearn_iris")``: (batching URL, unbatched URL), both started on first use."""
    logs = tmp_path_factory.mktemp("batching-logs")
    started: dict[str, tuple[ProcessServer, ProcessServer]] = {}

    def get(model: str) -> tuple[str, str]:
        if model not in started:
            on = ProcessServer(model_dir(model), {**SAME, **BATCHING}, logs / f"{model}-on.log")
            off = ProcessServer(model_dir(model), SAME, logs / f"{model}-off.log")
            started[model] = (on.start(), off.start())  # both load at once
        on, off = started[model]
        return on.url, off.url

    yield get
    for pair in started.values():
        for server in pair:
            server.stop()


def post(url: str, case: Case, client: httpx.Client | None = None) -> Answer:
    send = client.post if client is not None else httpx.post
    answer = send(url + "/invocations", content=case.body, headers=case.headers, timeout=60)
    return answer.status_code, answer.headers.get("content-type", ""), answer.content


def batch_sizes(url: str) -> tuple[float, float]:
    """(predict calls, requests in them) from ``kiln_batch_size``."""
    found = {"kiln_batch_size_count": 0.0, "kiln_batch_size_sum": 0.0}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name] = sample.value
    return found["kiln_batch_size_count"], found["kiln_batch_size_sum"]


def concurrently(url: str, cases: list[Case], clients: int = 16) -> list[Answer]:
    with ThreadPoolExecutor(clients) as pool, httpx.Client(timeout=60) as client:
        return list(pool.map(lambda case: post(url, case, client), cases))


@pytest.mark.parametrize("model", MODELS)
def test_every_shape_answers_the_same_batched(model: str, servers: Callable[[str], tuple[str, str]]) -> None:
    cases = [c for c in [*GOOD, *BAD, MISSING_CONTENT_TYPE] if c.model == model]
    batched, unbatched = servers(model)
    expected = {case.id: post(unbatched, case) for case in cases}
    sent = cases * 6
    random.Random(12).shuffle(sent)
    calls_before, requests_before = batch_sizes(batched)
    answers = concurrently(batched, sent)
    for case, answer in zip(sent, answers, strict=True):
        assert answer == expected[case.id], case.id
    calls, requests = batch_sizes(batched)
    # Refused before the lane (415: content types) never reach the batcher; all others do.
    assert requests - requests_before == sum(expected[case.id][0] != 415 for case in sent)
    assert calls - calls_before < requests - requests_before, "no batch of more than one request formed"


def test_good_neighbours_of_a_bad_request_still_get_their_answers(
    servers: Callable[[str], tuple[str, str]],
) -> None:
    """A NaN row parses to the same columns and dtypes as good rows, so it joins their batch; the
    model raises for the whole batch, and every request is answered alone: only the bad one fails."""
    batched, unbatched = servers("sklearn_iris")
    good = [
        Case(f"good-{i}", "sklearn_iris", _split([[5.0 + i / 10, 3.0, 1.5 + i / 5, 0.2 * (i % 12)]]))
        for i in range(30)
    ]
    bad = Case("nan", "sklearn_iris", _split([[None, 3.0, 1.5, 0.2]]))
    sent = [*good, bad, *good, bad]
    expected = {case.id: post(unbatched, case) for case in [*good, bad]}
    assert expected["nan"][0] == 400
    answers = concurrently(batched, sent, clients=24)
    assert answers == [expected[case.id] for case in sent]


def _split(rows: list[list[float | None]]) -> bytes:
    import json

    return json.dumps({"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows}}).encode()


def test_settings_parse_and_refuse() -> None:
    assert RuntimeSettings().max_batch_size == 1
    assert RuntimeSettings().max_batch_delay == 2.0
    parsed = RuntimeSettings.from_env({"KILN_MAX_BATCH_SIZE": "32", "KILN_MAX_BATCH_DELAY": "5ms"})
    assert (parsed.max_batch_size, parsed.max_batch_delay) == (32, 5.0)
    assert RuntimeSettings.from_env({"KILN_MAX_BATCH_SIZE": "0"}).max_batch_size == 1
    assert parsed.to_env()["KILN_MAX_BATCH_DELAY"] == "5.0"
    with pytest.raises(UsageError, match="KILN_MAX_BATCH_DELAY='soon' is not a number of milliseconds"):
        RuntimeSettings.from_env({"KILN_MAX_BATCH_DELAY": "soon"})
    with pytest.raises(UsageError, match="between 0 and 60000"):
        RuntimeSettings.from_env({"KILN_MAX_BATCH_DELAY": "-1"})
    with pytest.raises(UsageError, match="KILN_MAX_BATCH_SIZE"):
        RuntimeSettings.from_env({"KILN_MAX_BATCH_SIZE": "many"})


def test_split_rows_needs_one_row_per_input_row() -> None:
    import numpy as np
    import pandas as pd

    assert [p.tolist() for p in split_rows(np.arange(5), [2, 3]) or []] == [[0, 1], [2, 3, 4]]
    frame = pd.DataFrame({"a": range(4)})
    assert [p["a"].tolist() for p in split_rows(frame, [1, 3]) or []] == [[0], [1, 2, 3]]
    assert split_rows([1, 2, 3], [1, 2]) == [[1], [2, 3]]
    assert split_rows(np.arange(4), [2, 3]) is None  # a row short: each request alone
    assert split_rows(np.float64(1.0), [1, 1]) is None
    assert split_rows({"a": 1}, [1]) is None


def test_build_options_take_the_same_names_and_checks() -> None:
    assert runtime_environment(RecipeOptions()) == ()
    options = RecipeOptions(max_batch_size="32")  # type: ignore[arg-type]  # a string, as from the CLI
    assert runtime_environment(options) == (("KILN_MAX_BATCH_SIZE", "32"), ("KILN_MAX_BATCH_DELAY", "2.0"))
    assert runtime_labels(options) == (("io.kiln.max-batch-size", "32"), ("io.kiln.max-batch-delay", "2.0"))
    with pytest.raises(UsageError, match="--max-batch-delay='x' is not a number of milliseconds"):
        RecipeOptions(max_batch_delay="x")  # type: ignore[arg-type]
