"""The predict lane: one job at a time on a worker thread, bounded by the request timeout.

Every ``POST /invocations`` runs its parse -> predict -> serialise job on this lane (a
prediction is GIL-bound, so one at a time per worker process loses nothing and keeps
the event loop free for I/O). ``settings.request_timeout`` bounds the time from the
request's arrival to the job's result, queueing included. When it expires:

* a job that has not started yet is dropped: the client gets 504 and nothing ran;
* a job that is running cannot be stopped from outside a Python thread. The client
  gets 504 ``DEADLINE_EXCEEDED``, a warning is logged, the ``kiln_predict_timeouts_total``
  metric counts it, the stuck thread is retired (it exits once its job returns) and a
  fresh thread serves the requests still queued. Then the worker asks itself to stop
  (``SIGTERM`` to its own process): uvicorn stops accepting, finishes its other in-flight
  requests and exits, and the supervisor starts a fresh worker. The stuck work thus
  burns CPU only until the worker has drained, and never unseen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

_QUEUED, _RUNNING, _DONE, _DROPPED = range(4)


class PredictTimeout(Exception):
    """The job did not finish before its deadline; ``started`` tells whether it was running."""

    def __init__(self, seconds: float, *, started: bool) -> None:
        state = "was still running" if started else "was still queued"
        super().__init__(f"the request did not finish within the request timeout of {seconds:g} s ({state})")
        self.started = started


class _Job(Generic[T]):
    __slots__ = ("fn", "future", "lock", "loop", "state")

    def __init__(self, fn: Callable[[], T], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        self.lock = threading.Lock()
        self.state = _QUEUED


class _Runner:
    """One thread taking jobs off the shared queue until it is retired or stopped."""

    def __init__(self, queue: SimpleQueue[_Job[Any] | None], name: str) -> None:
        self.queue = queue
        self.retired = False
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.retired:
            job = self.queue.get()
            if job is None:
                return
            with job.lock:
                if job.state != _QUEUED:
                    continue
                job.state = _RUNNING
            try:
                result = job.fn()
            except BaseException as exc:
                outcome: tuple[bool, Any] = (False, exc)
            else:
                outcome = (True, result)
            with job.lock:
                job.state = _DONE
            try:
                job.loop.call_soon_threadsafe(_settle, job.future, outcome)
            except RuntimeError:  # the event loop is closed: the server is gone
                return


def _drop_if_queued(job: _Job[Any]) -> int:
    """Mark a job that has not started as dropped; its state before that."""
    with job.lock:
        state = job.state
        if state == _QUEUED:
            job.state = _DROPPED
    return state


class _Expired(Exception):
    """Set on a job's future when its deadline passes first."""


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(_Expired())


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def exit_worker() -> None:
    """Ask this worker process to drain and exit (uvicorn's graceful SIGTERM handling)."""
    os.kill(os.getpid(), signal.SIGTERM)


class PredictLane:
    """Runs jobs one at a time on a daemon thread, each bounded by a deadline."""

    def __init__(
        self,
        timeout: float,
        *,
        on_stuck: Callable[[], None] = exit_worker,
        on_timeout: Callable[[bool], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self._on_stuck = on_stuck
        self._on_timeout = on_timeout
        self._queue: SimpleQueue[_Job[Any] | None] = SimpleQueue()
        self._runners = 0
        self._runner = self._new_runner()
        self.stuck = False
        """True once a job overran its deadline while running: this worker is on its way out."""

    def _new_runner(self) -> _Runner:
        self._runners += 1
        return _Runner(self._queue, name=f"kiln-predict-{self._runners}")

    async def run(self, fn: Callable[[], T], *, deadline: float) -> T:
        """``fn()`` on the lane; PredictTimeout when ``deadline`` (event-loop time) passes first."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop)
        timer = loop.call_at(deadline, _expire, job.future)
        self._queue.put(job)
        try:
            return await job.future
        except _Expired:
            pass
        except asyncio.CancelledError:  # the request's task was cancelled: don't run it later
            _drop_if_queued(job)
            raise
        finally:
            timer.cancel()
        state = _drop_if_queued(job)
        started = state == _RUNNING  # _DONE: it finished in the instant the deadline passed
        if self._on_timeout is not None:
            self._on_timeout(started)
        if started:
            self._abandon_runner()
        raise PredictTimeout(self.timeout, started=started)

    def _abandon_runner(self) -> None:
        logger.warning(
            "a prediction overran the request timeout of %g s and is still running; its thread is "
            "abandoned, and this worker (pid %d) will exit once its other in-flight requests are done",
            self.timeout,
            os.getpid(),
        )
        self._runner.retired = True
        self._runner = self._new_runner()
        if not self.stuck:
            self.stuck = True
            self._on_stuck()

    def close(self) -> None:
        """Let the current thread finish its queue and stop (threads are daemons either way)."""
        self._runner.retired = True
        self._queue.put(None)
