"""Adaptive micro-batching: concurrent ``/invocations`` requests combined into one ``predict`` call.

Opt-in per worker (``max_batch_size`` > 1). ``Batcher.run`` takes the place of the predict
lane's ``run`` for MLflow scoring requests:

* a request that finds the worker idle goes to the lane at once, alone: no added delay;
* requests that arrive while a batch is on the lane wait for the next batch, which leaves
  when the lane is free and either ``max_batch_size`` requests are waiting or the oldest has
  waited ``max_batch_delay`` (so a request waits for company at most that long, or for the
  batch in flight when that takes longer);
* on the lane, ``answer_batch`` parses every body and combines the requests that can be:
  DataFrames (or arrays) with the same columns, dtypes and params from the same content
  type. Each group is concatenated, predicted once, and the prediction split back by rows.
  A request that cannot be combined, that fails to parse, or whose group fails in any way
  (the predict raises, the prediction is not one row per input row, a part will not
  serialise) is answered alone by the unbatched path, so its answer is exactly the one it
  would get without batching, and one bad request never fails its neighbours.

The request timeout holds per request: one that expires while waiting for a batch is
answered 504 ``was still queued`` and never runs; a batch on the lane is bounded by the
latest deadline among its requests, with the lane's usual handling of a stuck predict.
The queue limit is counted by the endpoint around ``run``, as without batching.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kiln.server.content import MediaKind
from kiln.server.parsing import parse_request
from kiln.server.serialize import predictions_json
from kiln.server.timeout import PredictTimeout

if TYPE_CHECKING:
    from kiln.server.predict import Predictor
    from kiln.server.state import ServerState

logger = logging.getLogger(__name__)

Answer = tuple[int, bytes]


@dataclass(frozen=True)
class ScoreWork:
    """An MLflow scoring request's work on the lane (``body -> answer``), which a batch may combine."""

    state: ServerState
    kind: MediaKind

    def __call__(self, body: bytes) -> Answer:
        return self.state.score(body, self.kind)


@dataclass(eq=False)
class _Entry:
    work: Callable[[bytes], Answer]
    body: bytes
    deadline: float
    arrived: float
    alone: bool
    """It arrived while the worker was idle: it leaves at once, without waiting for company."""
    future: asyncio.Future[Answer]
    timer: asyncio.TimerHandle | None = field(default=None)


class Batcher:
    """One worker's batching queue in front of its predict lane (used from the event loop only)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.max_size = state.settings.max_batch_size
        self.max_delay = state.settings.max_batch_delay / 1000.0
        self._pending: deque[_Entry] = deque()
        self._busy = False
        self._wake: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[bytes], Answer], body: bytes, *, deadline: float) -> Answer:
        """``work(body)``, alone or in a batch; PredictTimeout when ``deadline`` passes first."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        entry = _Entry(work, body, deadline, now, not self._busy and not self._pending, loop.create_future())
        entry.timer = loop.call_at(deadline, self._expire, entry)
        self._pending.append(entry)
        self._dispatch_if_due()
        try:
            return await entry.future
        finally:
            if entry.timer is not None:
                entry.timer.cancel()
            if not entry.future.done() or entry.future.cancelled():
                self._forget(entry)  # cancelled while waiting: never run it

    def _dispatch_if_due(self) -> None:
        if self._busy or not self._pending:
            return
        loop = asyncio.get_running_loop()
        oldest = self._pending[0]
        due = oldest.arrived + self.max_delay
        if oldest.alone or len(self._pending) >= self.max_size or loop.time() >= due:
            self._dispatch()
        elif self._wake is None:
            self._wake = loop.call_at(due, self._woken)

    def _woken(self) -> None:
        self._wake = None
        self._dispatch_if_due()

    def _dispatch(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        batch = [self._pending.popleft() for _ in range(min(self.max_size, len(self._pending)))]
        loop = asyncio.get_running_loop()
        now = loop.time()
        for entry in batch:
            if entry.timer is not None:
                entry.timer.cancel()
                entry.timer = None
        metrics = self.state.metrics
        if metrics is not None:
            metrics.batch(len(batch), [now - entry.arrived for entry in batch])
        self._busy = True
        self._task = loop.create_task(self._run_batch(batch))  # held: the loop keeps only weak refs

    async def _run_batch(self, batch: list[_Entry]) -> None:
        lane = self.state.lane
        try:
            assert lane is not None  # the endpoint answers 503 before the model is loaded
            items = [(entry.work, entry.body) for entry in batch]
            deadline = max(entry.deadline for entry in batch)
            answers = await lane.run(lambda: answer_batch(items), deadline=deadline)
        except PredictTimeout as exc:
            if self.state.metrics is not None:  # the lane counted one; every request is one
                for _ in batch[1:]:
                    self.state.metrics.predict_timeout(exc.started)
            _settle(batch, error=exc)
        except BaseException as exc:  # a bug: each request's endpoint answers 500 with it
            _settle(batch, error=exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            _settle(batch, answers=answers)
        finally:
            self._busy = False
            if self._pending:
                self._dispatch_if_due()

    def _expire(self, entry: _Entry) -> None:
        """The request's deadline passed while it waited for a batch: 504, and it never runs."""
        entry.timer = None
        if entry not in self._pending:
            return
        self._pending.remove(entry)
        lane = self.state.lane
        timeout = lane.timeout if lane is not None else self.state.settings.request_timeout
        if self.state.metrics is not None:
            self.state.metrics.predict_timeout(False)
        if not entry.future.done():
            entry.future.set_exception(PredictTimeout(timeout, started=False))

    def _forget(self, entry: _Entry) -> None:
        if entry in self._pending:
            self._pending.remove(entry)


def _settle(
    batch: list[_Entry], *, answers: Sequence[Answer] = (), error: BaseException | None = None
) -> None:
    for index, entry in enumerate(batch):
        if entry.future.done():
            continue
        if isinstance(error, asyncio.CancelledError):  # the batch's task was cancelled (shutdown)
            entry.future.cancel()
        elif error is not None:
            entry.future.set_exception(error)
        else:
            entry.future.set_result(answers[index])


# --- on the lane ---------------------------------------------------------------------------------


def answer_batch(items: Sequence[tuple[Callable[[bytes], Answer], bytes]]) -> list[Answer]:
    """Each request's answer, in order, predicting combinable requests together."""
    if len(items) == 1:
        work, body = items[0]
        return [work(body)]
    answers: list[Answer | None] = [None] * len(items)
    groups: dict[Hashable, list[tuple[int, Any]]] = {}
    for index, (work, body) in enumerate(items):
        found = _combinable(work, body)
        if found is None:
            answers[index] = work(body)
        else:
            groups.setdefault(found[0], []).append((index, found[1]))
    for members in groups.values():
        work = items[members[0][0]][0]
        assert isinstance(work, ScoreWork)
        predictor = work.state.predictor
        assert predictor is not None
        together = (
            _predict_together(predictor, [parsed for _, parsed in members]) if len(members) > 1 else None
        )
        for position, (index, _) in enumerate(members):
            if together is not None:
                answers[index] = together[position]
            else:  # alone, or the group failed: each request as it would be answered unbatched
                answers[index] = items[index][0](items[index][1])
    done = [answer for answer in answers if answer is not None]
    assert len(done) == len(items)
    return done


def _combinable(work: Callable[[bytes], Answer], body: bytes) -> tuple[Hashable, Any] | None:
    """``(key, parsed request)`` if the request may join others with the same key, else None."""
    if not isinstance(work, ScoreWork) or work.state.predictor is None:
        return None
    try:
        parsed = parse_request(body, work.kind, work.state.predictor.contract)
    except Exception:  # the unbatched path parses it again and gives its error answer
        return None
    if parsed.unwrapped:
        return None
    shape = _shape_key(parsed.data, conforms=parsed.conforms)
    if shape is None:
        return None
    try:
        params = json.dumps(parsed.params, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError):
        return None
    return (work.kind, shape, params, parsed.conforms), parsed


def _shape_key(data: Any, *, conforms: bool) -> Hashable | None:
    """What must be equal for two inputs to be concatenated; None for inputs never combined."""
    import numpy as np
    import pandas as pd

    if type(data) is np.ndarray:
        if data.ndim == 0 or data.shape[0] == 0 or data.dtype == object:
            return None
        return ("ndarray", data.shape[1:], data.dtype.str)
    if type(data) is not pd.DataFrame or len(data) == 0:
        return None
    index, columns = data.index, data.columns
    if not (type(index) is pd.RangeIndex and index.start == 0 and index.step == 1):
        return None
    if conforms:  # exactly the signature's columns, order and dtypes: nothing more to compare
        return ("conforming frame",)
    if not columns.is_unique:
        return None
    dtypes = tuple(str(dtype) for dtype in data.dtypes)
    # An object column is converted by MLflow's schema enforcement by looking at all its values
    # together (infer_objects), so a neighbour's values could change a request's outcome; so is a
    # category column (its categories). Only the parser's own conforming frames are safe with them.
    if not conforms and any(dtype in ("object", "category") for dtype in dtypes):
        return None
    return ("frame", tuple(columns), dtypes)


def _predict_together(predictor: Predictor, parsed: list[Any]) -> list[Answer] | None:
    """The answers of requests predicted as one; None if anything about it fails."""
    import numpy as np
    import pandas as pd

    datas = [request.data for request in parsed]
    sizes = [len(data) for data in datas]
    first = parsed[0]
    try:
        if type(datas[0]) is np.ndarray:
            combined: Any = np.concatenate(datas, axis=0)
        else:
            combined = pd.concat(datas, ignore_index=True)
        prediction = predictor.predict(combined, first.params, conforms=first.conforms)
        parts = split_rows(prediction, sizes)
        if parts is None:
            logger.debug("a batch's prediction is not one row per input row; answering each alone")
            return None
        return [(200, predictions_json(part)) for part in parts]
    except Exception:
        logger.debug("a batch of %d requests failed; answering each alone", len(parsed), exc_info=True)
        return None


def split_rows(prediction: Any, sizes: Sequence[int]) -> list[Any] | None:
    """``prediction`` cut into consecutive row ranges of ``sizes``; None unless it has that many rows."""
    import numpy as np
    import pandas as pd

    if isinstance(prediction, np.ndarray):
        if prediction.ndim == 0:
            return None
        take: Callable[[int, int], Any] = lambda a, b: prediction[a:b]  # noqa: E731
    elif isinstance(prediction, (pd.DataFrame, pd.Series)):
        take = lambda a, b: prediction.iloc[a:b]  # noqa: E731
    elif isinstance(prediction, list):
        take = lambda a, b: prediction[a:b]  # noqa: E731
    else:
        return None
    if len(prediction) != sum(sizes):
        return None
    parts, start = [], 0
    for size in sizes:
        parts.append(take(start, start + size))
        start += size
    return parts
