"""The same V2 requests, sent with a real V2 client (tritonclient), to kiln and to a real MLServer.

kiln runs as it does in an image (``python -m kiln.runtime serve``: nginx in front of a
uvicorn worker), one runtime per fixture model, each named after its model; MLServer
1.7.1 with mlserver-mlflow serves the same three model directories. Compared: every
answer's outputs (names, datatypes, shapes, parameters, data) and content type, the
models' input metadata, and the errors MLServer answers by the protocol (404). Where
MLServer answers a bad request with a stack trace (500) or FastAPI's 422, kiln answers 400
with ``{"error": ...}``: asserted as such below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.runtime.running import (
    Running,
    free_port,
    remove_dir,
    running,
    runtime_command,
    runtime_env,
    short_tmp_dir,
)
from tests.server.cases import IRIS_COLUMNS, IRIS_ROWS
from tests.server.mlserver import mlserver

pytestmark = pytest.mark.slow

MODELS = ("sklearn_iris", "sklearn_tensor", "custom_pyfunc_params")


@pytest.fixture(scope="module")
def servers(
    model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[str, str]]]:
    """model name -> (kiln's host:port, MLServer's host:port)."""
    work = tmp_path_factory.mktemp("v2-mlserver")
    with ExitStack() as stack:
        theirs = stack.enter_context(mlserver({name: model_dir(name) for name in MODELS}, work))
        found = {}
        for name in MODELS:
            ours = _kiln(model_dir(name), name, work, stack)
            found[name] = (ours.url.removeprefix("http://"), theirs.removeprefix("http://"))
        yield found


def _kiln(model: Path, name: str, work: Path, stack: ExitStack) -> Running:
    """``python -m kiln.runtime serve`` of ``model``, named ``name`` on the V2 paths, one worker."""
    port = free_port()
    runtime_dir = short_tmp_dir("kiln-v2-")
    stack.callback(remove_dir, runtime_dir)
    env = runtime_env(model, port, runtime_dir, {"KILN_WORKERS": "1", "KILN_V2_MODEL_NAME": name})
    run = stack.enter_context(running(runtime_command("serve"), env, port, runtime_dir, work / "logs"))
    run.wait_ready()
    return run


def _tensor(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=False)  # JSON: MLServer has no binary extension
    return tensor


def _iris(datatype: str = "FP64") -> list[triton.InferInput]:
    rows = np.array(IRIS_ROWS, dtype=np.float32 if datatype == "FP32" else np.float64)
    return [_tensor(name, rows[:, [i]], datatype) for i, name in enumerate(IRIS_COLUMNS)]


def _params_inputs() -> list[triton.InferInput]:
    return [
        _tensor("x", np.array([[1.0], [2.5], [-3.0]]), "FP64"),
        _tensor("text", np.array([["a"], ["b"], ["c"]], dtype=object), "BYTES"),
    ]


CASES: dict[str, tuple[str, Callable[[], list[triton.InferInput]], dict[str, Any] | None]] = {
    "iris-pd-from-signature": ("sklearn_iris", _iris, None),
    "iris-pd-explicit": ("sklearn_iris", _iris, {"content_type": "pd"}),
    "iris-fp32-columns": ("sklearn_iris", lambda: _iris("FP32"), None),
    "tensor-np-from-signature": (
        "sklearn_tensor",
        lambda: [_tensor("input-0", np.array(IRIS_ROWS), "FP64")],
        None,
    ),
    "tensor-np-explicit": (
        "sklearn_tensor",
        lambda: [_tensor("any-name", np.array(IRIS_ROWS), "FP64")],
        {"content_type": "np"},
    ),
    "params-pd-strings": ("custom_pyfunc_params", _params_inputs, None),
    "params-pd-with-params": ("custom_pyfunc_params", _params_inputs, {"multiplier": 2.0, "suffix": "!"}),
}


def _client(address: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=address, network_timeout=60.0)


def _infer(
    address: str, model: str, inputs: list[triton.InferInput], parameters: dict[str, Any] | None
) -> Any:
    return _client(address).infer(model, inputs, parameters=parameters).get_response()


@pytest.mark.parametrize("case", list(CASES))
def test_same_request_same_answer(case: str, servers: dict[str, tuple[str, str]]) -> None:
    model, inputs, parameters = CASES[case]
    ours_at, theirs_at = servers[model]
    ours = _infer(ours_at, model, inputs(), parameters)
    theirs = _infer(theirs_at, model, inputs(), parameters)
    assert ours.pop("id") and theirs.pop("id")  # both make one up
    assert ours == theirs
    for output in ours["outputs"]:
        result = _client(ours_at).infer(model, inputs(), parameters=parameters)
        assert result.as_numpy(output["name"]) is not None  # the client reads it back


def test_same_input_metadata(servers: dict[str, tuple[str, str]]) -> None:
    for model, (ours_at, theirs_at) in servers.items():
        ours = _client(ours_at).get_model_metadata(model)
        theirs = _client(theirs_at).get_model_metadata(model)
        assert ours["inputs"] == theirs["inputs"], model
        assert ours["parameters"] == theirs["parameters"], model
        assert ours["name"] == theirs["name"] == model
    ours = _client(servers["custom_pyfunc_params"][0]).get_model_metadata("custom_pyfunc_params")
    theirs = _client(servers["custom_pyfunc_params"][1]).get_model_metadata("custom_pyfunc_params")
    assert ours["outputs"] == theirs["outputs"]  # named outputs: the same
    # An unnamed output: MLServer lists it as output-0 but answers output-1; kiln lists output-1.
    iris_ours = _client(servers["sklearn_iris"][0]).get_model_metadata("sklearn_iris")["outputs"]
    iris_theirs = _client(servers["sklearn_iris"][1]).get_model_metadata("sklearn_iris")["outputs"]
    assert [iris_ours[0]["name"], iris_theirs[0]["name"]] == ["output-1", "output-0"]


def test_health_through_the_client(servers: dict[str, tuple[str, str]]) -> None:
    for model, addresses in servers.items():
        for address in addresses:
            client = _client(address)
            assert client.is_server_live() and client.is_server_ready()
            assert client.is_model_ready(model)
            assert not client.is_model_ready("nope")


def _error(address: str, model: str, inputs: list[triton.InferInput], parameters: Any = None) -> Any:
    with pytest.raises(InferenceServerException) as raised:
        _client(address).infer(model, inputs, parameters=parameters)
    return raised.value


def test_unknown_model_is_404_in_both(servers: dict[str, tuple[str, str]]) -> None:
    ours_at, theirs_at = servers["sklearn_iris"]
    ours, theirs = _error(ours_at, "nope", _iris()), _error(theirs_at, "nope", _iris())
    assert (
        (ours.status(), ours.message())
        == (theirs.status(), theirs.message())
        == ("404", "Model nope not found")
    )


def test_input_that_breaks_the_signature(servers: dict[str, tuple[str, str]]) -> None:
    ours_at, theirs_at = servers["sklearn_iris"]
    ours = _error(ours_at, "sklearn_iris", _iris()[:3])  # a column missing
    theirs = _error(theirs_at, "sklearn_iris", _iris()[:3])
    assert ours.status() == "400"
    assert "Model is missing inputs ['petal width (cm)']" in ours.message()
    assert theirs.status() == "500"  # MLServer: MLflow's exception escapes as a stack trace


def test_malformed_requests(servers: dict[str, tuple[str, str]]) -> None:
    ours_at, theirs_at = servers["sklearn_tensor"]
    wrong_shape = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 4], "data": IRIS_ROWS}]}
    wrong_type = {"inputs": [{"name": "input-0", "datatype": "DOUBLE", "shape": [3, 4], "data": IRIS_ROWS}]}
    for body, mlserver_status, ours_says in (
        (wrong_shape, 500, "shape [2, 4] holds 8 elements but 'data' has 12"),
        (wrong_type, 422, "datatype 'DOUBLE' is not one of"),
    ):
        path = "/v2/models/sklearn_tensor/infer"
        ours = httpx.post(f"http://{ours_at}{path}", json=body, timeout=30)
        theirs = httpx.post(f"http://{theirs_at}{path}", json=body, timeout=30)
        assert (ours.status_code, theirs.status_code) == (400, mlserver_status)
        assert ours_says in ours.json()["error"]
