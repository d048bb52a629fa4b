"""Workers forked from a process that loaded the model once (the zygote); loading per worker instead."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.runtime.conftest import StartRuntime
from tests.runtime.running import children_of, wait_for
from tests.runtime.scoring import iris_expected, iris_request

LOADED = "loaded model"


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def test_workers_are_forked_from_the_loaded_model_and_a_killed_one_is_reforked_without_loading(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    model = model_dir("sklearn_iris")
    run = start_runtime(model, env={"KILN_WORKERS": "2"})
    run.wait_ready()
    wait_for(lambda: "ready (2/2)" in run.output(), 60, "both workers ready", run)
    zygote = run.zygote()
    assert zygote is not None
    workers = run.workers()
    assert len(workers) == 2 and {_parent(pid) for pid in workers} == {zygote}
    response = run.post("/invocations", iris_request(model))
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": iris_expected(model)}
    output = run.output()
    assert output.count(LOADED) == 1, output  # once, in the zygote, for both workers
    ready_line = r"ready: serving model .* in [\d.]+ s \(supervisor [\d.]+ s, model start"
    wait_for(lambda: re.search(ready_line, run.output()) is not None, 15, "the ready line", run)

    killed_at = time.monotonic()
    os.kill(workers[0], signal.SIGKILL)
    died = "died (signal SIGKILL)"
    wait_for(lambda: "ready (2/2)" in run.output().partition(died)[2], 30, "a new fork", run)
    replaced_in = time.monotonic() - killed_at
    assert replaced_in < 5, f"the replacement took {replaced_in:.2f} s"  # seconds to load the model otherwise
    assert run.output().count(LOADED) == 1  # no second load
    assert len(run.workers()) == 2 and workers[0] not in run.workers()
    assert run.post("/invocations", iris_request(model)).json() == {"predictions": iris_expected(model)}


def test_a_worker_killed_under_load_costs_at_most_the_requests_inside_it(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    """Requests nginx had not yet written to the dead worker go to the other one or wait for its fork.

    Each of the 4 clients has one request in flight at a time, so at most 4 can have been
    inside the killed worker; every other request must be answered 200.
    """
    model = model_dir("sklearn_iris")
    run = start_runtime(model, env={"KILN_WORKERS": "2"})
    run.wait_ready()
    wait_for(lambda: "ready (2/2)" in run.output(), 60, "both workers ready", run)
    body, stop_at = iris_request(model), time.monotonic() + 4.0
    statuses: list[int | str] = []

    def client() -> None:
        with httpx.Client(base_url=run.url, timeout=30) as session:
            while time.monotonic() < stop_at:
                try:
                    statuses.append(session.post("/invocations", content=body, headers=JSON).status_code)
                except httpx.HTTPError as exc:
                    statuses.append(type(exc).__name__)

    with ThreadPoolExecutor(CLIENTS) as pool:
        running = [pool.submit(client) for _ in range(CLIENTS)]
        time.sleep(1.5)
        os.kill(run.workers()[0], signal.SIGKILL)
        for future in running:
            future.result()
    failed = [status for status in statuses if status != 200]
    assert len(statuses) > 50, statuses
    assert len(failed) <= CLIENTS, f"{len(failed)} of {len(statuses)} failed: {failed}"
    wait_for(lambda: len(run.workers()) == 2, 30, "the replacement", run)


CLIENTS = 4
JSON = {"Content-Type": "application/json"}

THREAD_MODEL = """
import threading, time
import mlflow.pyfunc


class StartsThreads(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.ticker = threading.Thread(target=time.sleep, args=(3600,), name="model-ticker", daemon=True)
        self.ticker.start()

    def predict(self, context, model_input, params=None):
        return [threading.active_count()] * len(model_input)


mlflow.models.set_model(StartsThreads())
"""


@pytest.fixture(scope="module")
def thread_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PythonModel whose load_context starts a thread: not safe to fork after loading."""
    import mlflow.pyfunc

    root = tmp_path_factory.mktemp("thread-model")
    code = root / "thread_model.py"
    code.write_text(textwrap.dedent(THREAD_MODEL))
    dest = root / "model"
    mlflow.pyfunc.save_model(str(dest), python_model=str(code), pip_requirements=["mlflow"])
    return dest


def test_a_model_that_starts_threads_is_loaded_in_each_worker_instead(
    start_runtime: StartRuntime, thread_model: Path
) -> None:
    run = start_runtime(thread_model, env={"KILN_WORKERS": "2"})
    run.wait_ready()
    wait_for(lambda: "ready (2/2)" in run.output(), 90, "both workers ready", run)
    output = run.output()
    assert (
        "not forking the workers from the loaded model: loading the model started 1 thread(s) (model-ticker)"
        in (output)
    )
    workers = run.workers()
    assert {_parent(pid) for pid in workers} == {run.supervisor_pid()}  # started with exec, not forked
    assert run.zygote() is None  # the zygote left once it had said so
    response = run.post("/invocations", '{"dataframe_split": {"columns": ["x"], "data": [[1]]}}')
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0] >= 2  # the model's thread runs in the worker


GC_MODEL = """
import gc
import mlflow.pyfunc


class ReportsCollector(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [[gc.isenabled(), gc.get_threshold()[0], gc.get_freeze_count()]] * len(model_input)


mlflow.models.set_model(ReportsCollector())
"""


def test_a_forked_worker_has_the_collector_as_python_sets_it_and_the_loaded_heap_frozen(
    start_runtime: StartRuntime, tmp_path: Path
) -> None:
    """The zygote loads with a high collector threshold; its workers get Python's own back."""
    import mlflow.pyfunc

    code = tmp_path / "gc_model.py"
    code.write_text(textwrap.dedent(GC_MODEL))
    mlflow.pyfunc.save_model(str(tmp_path / "model"), python_model=str(code), pip_requirements=["mlflow"])
    default = subprocess.run(
        [sys.executable, "-c", "import gc; print(gc.get_threshold()[0])"], capture_output=True, text=True
    )
    run = start_runtime(tmp_path / "model", env={"KILN_WORKERS": "1"})
    run.wait_ready()
    assert run.zygote() is not None
    response = run.post("/invocations", '{"dataframe_split": {"columns": ["x"], "data": [[1]]}}')
    assert response.status_code == 200, response.text
    enabled, threshold, frozen = response.json()["predictions"][0]
    assert enabled is True and threshold == int(default.stdout)
    assert frozen > 100_000  # mlflow, pandas and the model: shared with the zygote, never scanned


def test_preload_off_loads_in_each_worker(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path]
) -> None:
    model = model_dir("sklearn_iris")
    run = start_runtime(model, env={"KILN_WORKERS": "2", "KILN_PRELOAD_MODEL": "off"})
    run.wait_ready()
    wait_for(lambda: "ready (2/2)" in run.output(), 90, "both workers ready", run)
    assert run.zygote() is None
    assert {_parent(pid) for pid in run.workers()} == {run.supervisor_pid()}
    assert run.output().count(LOADED) == 2
    assert "first worker, model load included" in run.output()


def test_cuda_workers_one_per_gpu_each_with_its_own_device(
    start_runtime: StartRuntime, model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """KILN_ACCELERATOR=cuda, two GPUs (fake /dev/nvidiaN): two workers, CUDA_VISIBLE_DEVICES 0 and 1."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (dev / name).touch()
    env = {"KILN_ACCELERATOR": "cuda", "_KILN_DEV_DIR": str(dev)}
    run = start_runtime(model_dir("sklearn_iris"), env=env)
    run.wait_ready()
    wait_for(lambda: "ready (2/2)" in run.output(), 90, "both workers ready", run)
    assert run.zygote() is None  # a CUDA context does not survive a fork
    devices = sorted(_environ(pid).get("CUDA_VISIBLE_DEVICES", "unset") for pid in run.workers())
    assert devices == ["0", "1"]
    assert all(pid in {p for p, _ in children_of(run.supervisor_pid())} for pid in run.workers())


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if b"=" in item)
