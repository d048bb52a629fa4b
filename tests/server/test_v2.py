"""The Open Inference Protocol v2 endpoints of kiln's app over real HTTP: metadata, infer, errors.

The comparison with a real MLServer, through a real V2 client, is in test_v2_mlserver.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.server.cases import IRIS_COLUMNS, IRIS_ROWS, iris_frame

NAME = "mlflow-model"


def _iris_inputs(datatype: str = "FP64") -> list[dict[str, Any]]:
    return [
        {"name": name, "datatype": datatype, "shape": [3, 1], "data": [row[i] for row in IRIS_ROWS]}
        for i, name in enumerate(IRIS_COLUMNS)
    ]


PARAMS_INPUTS = [
    {"name": "x", "datatype": "FP64", "shape": [3, 1], "data": [1.0, 2.5, -3.0]},
    {"name": "text", "datatype": "BYTES", "shape": [3, 1], "data": ["a", "b", "c"]},
]


def _infer(url: str, body: Any, name: str = NAME, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=60, **kwargs)


def test_server_metadata_and_health(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("sklearn_iris")
    from kiln.version import __version__

    assert httpx.get(url + "/v2").json() == {"name": "kiln", "version": __version__, "extensions": []}
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{NAME}/ready"):
        assert httpx.get(url + path).status_code == 200, path


def _columns(*specs: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [
        {"name": n, "datatype": d, "shape": [-1, 1], "parameters": {"content_type": c}} for n, d, c in specs
    ]


METADATA = {
    "sklearn_iris": {
        "inputs": _columns(*[(name, "FP64", "np") for name in IRIS_COLUMNS]),
        "outputs": [
            {"name": "output-1", "datatype": "INT64", "shape": [-1], "parameters": {"content_type": "np"}}
        ],
        "parameters": {"content_type": "pd"},
    },
    "sklearn_tensor": {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [-1, 4], "parameters": {"content_type": "np"}}
        ],
        "outputs": [
            {"name": "output-1", "datatype": "INT64", "shape": [-1], "parameters": {"content_type": "np"}}
        ],
        "parameters": {"content_type": "np"},
    },
    "custom_pyfunc_params": {
        "inputs": _columns(("x", "FP64", "np"), ("text", "BYTES", "str")),
        "outputs": _columns(("scaled", "FP64", "np"), ("tagged", "BYTES", "str")),
        "parameters": {"content_type": "pd"},
    },
    "predict_raises": {"inputs": [], "outputs": []},
}


@pytest.mark.parametrize("scenario", list(METADATA))
def test_model_metadata_from_the_signature(scenario: str, kiln_url: Callable[..., str]) -> None:
    answer = httpx.get(kiln_url(scenario) + f"/v2/models/{NAME}")
    assert answer.status_code == 200
    expected = {"name": NAME, "versions": [], "platform": "mlflow", **METADATA[scenario]}
    assert answer.json() == expected


def test_infer_pd_gives_the_models_prediction(
    kiln_url: Callable[..., str], pyfunc: Callable[[str], Any]
) -> None:
    answer = _infer(kiln_url("sklearn_iris"), {"id": "r1", "inputs": _iris_inputs()})
    assert answer.status_code == 200, answer.text
    expected = pyfunc("sklearn_iris").predict(iris_frame()).tolist()
    assert answer.json() == {
        "model_name": NAME,
        "id": "r1",
        "parameters": {"content_type": "np"},
        "outputs": [
            {
                "name": "output-1",
                "shape": [3, 1],
                "datatype": "INT64",
                "parameters": {"content_type": "np"},
                "data": expected,
            }
        ],
    }


def test_infer_np_tensor(kiln_url: Callable[..., str], pyfunc: Callable[[str], Any]) -> None:
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [3, 4], "data": IRIS_ROWS}  # nested data
    answer = _infer(kiln_url("sklearn_tensor"), {"inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"]  # a fresh one, as MLServer gives
    assert body["outputs"][0]["data"] == pyfunc("sklearn_tensor").predict(np.array(IRIS_ROWS)).tolist()


def test_params_columns_and_outputs(kiln_url: Callable[..., str], pyfunc: Callable[[str], Any]) -> None:
    url = kiln_url("custom_pyfunc_params")
    body = {"inputs": PARAMS_INPUTS, "parameters": {"multiplier": 2.0, "suffix": "!"}}
    answer = _infer(url, body)
    assert answer.status_code == 200, answer.text
    frame = pd.DataFrame({"x": [1.0, 2.5, -3.0], "text": ["a", "b", "c"]})
    expected = pyfunc("custom_pyfunc_params").predict(frame, params={"multiplier": 2.0, "suffix": "!"})
    scaled, tagged = answer.json()["outputs"]
    assert answer.json()["parameters"] == {"content_type": "pd"}
    assert scaled == {
        "name": "scaled",
        "shape": [3, 1],
        "datatype": "FP64",
        "data": expected["scaled"].tolist(),
    }
    assert tagged["data"] == ["a!", "b!", "c!"]
    assert tagged["parameters"] == {"content_type": "str"}
    only = _infer(url, {**body, "outputs": [{"name": "tagged"}]})
    assert [output["name"] for output in only.json()["outputs"]] == ["tagged"]
    unknown = _infer(url, {**body, "outputs": [{"name": "nope"}]})
    assert unknown.status_code == 400
    assert "no output named 'nope'" in unknown.json()["error"]


BAD = {
    "not-json": (b"{nope", 400, "not valid JSON"),
    "not-an-object": ([1, 2], 400, "must be a JSON object"),
    "no-inputs": ({"outputs": []}, 400, "'inputs' must be a non-empty list"),
    "bad-datatype": ({"inputs": [{**_iris_inputs()[0], "datatype": "FLOAT"}]}, 400, "datatype 'FLOAT'"),
    "shape-mismatch": ({"inputs": [{**_iris_inputs()[0], "shape": [2, 1]}]}, 400, "holds 2 elements"),
    "bad-content-type": ({"inputs": _iris_inputs(), "parameters": {"content_type": "zz"}}, 400, "'zz'"),
    "np-two-inputs": (
        {"inputs": _iris_inputs()[:2], "parameters": {"content_type": "np"}},
        400,
        "exactly one input tensor",
    ),
    "missing-column": ({"inputs": _iris_inputs()[:3]}, 400, "Model is missing inputs ['petal width (cm)']"),
    "ints-for-doubles": ({"inputs": _iris_inputs("INT64")}, 400, "Failed to enforce schema"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_the_protocols_error(case: str, kiln_url: Callable[..., str]) -> None:
    body, status, fragment = BAD[case]
    url = kiln_url("sklearn_iris")
    if isinstance(body, bytes):
        answer = httpx.post(f"{url}/v2/models/{NAME}/infer", content=body)
    else:
        answer = _infer(url, body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"error"}
    assert fragment in answer.json()["error"]
    assert _infer(url, {"inputs": _iris_inputs()}).status_code == 200  # and the server goes on


def test_unknown_models_versions_and_paths(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("sklearn_iris")
    assert httpx.get(url + "/v2/models/nope").json() == {"error": "Model nope not found"}
    assert httpx.get(url + "/v2/models/nope/ready").status_code == 404
    assert _infer(url, {"inputs": _iris_inputs()}, name="nope").status_code == 404
    versioned = httpx.get(url + f"/v2/models/{NAME}/versions/1")
    assert (versioned.status_code, versioned.json()) == (
        404,
        {"error": f"Model {NAME} with version 1 not found"},
    )
    wrong_method = httpx.get(url + f"/v2/models/{NAME}/infer")
    assert wrong_method.status_code == 405
    assert "allowed: POST" in wrong_method.json()["error"]
    nowhere = httpx.get(url + "/v2/nowhere")
    assert nowhere.status_code == 404
    assert set(nowhere.json()) == {"error"}


def test_binary_tensor_data_is_refused_clearly(kiln_url: Callable[..., str]) -> None:
    headers = {"Inference-Header-Content-Length": "10"}
    answer = _infer(kiln_url("sklearn_iris"), {"inputs": _iris_inputs()}, headers=headers)
    assert answer.status_code == 400
    assert "binary_data=False" in answer.json()["error"]


def test_a_model_without_signature_needs_a_content_type(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("predict_raises")
    tensor = {"name": "a", "datatype": "INT64", "shape": [1], "data": [1]}
    unsaid = _infer(url, {"inputs": [tensor]})
    assert unsaid.status_code == 400
    assert "set parameters.content_type" in unsaid.json()["error"]
    raised = _infer(url, {"inputs": [tensor], "parameters": {"content_type": "pd"}})
    assert raised.status_code == 400
    assert "deliberate error from predict" in raised.json()["error"]


def test_name_and_version_settings(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("sklearn_iris", v2_model_name="iris", v2_model_version="3")
    assert httpx.get(url + "/v2/models/iris").json()["versions"] == ["3"]
    answer = _infer(url, {"inputs": _iris_inputs()}, name="iris/versions/3")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["model_name"], answer.json()["model_version"]) == ("iris", "3")
    assert _infer(url, {"inputs": _iris_inputs()}, name="iris").status_code == 200
    assert _infer(url, {"inputs": _iris_inputs()}, name="iris/versions/4").status_code == 404
    assert _infer(url, {"inputs": _iris_inputs()}).status_code == 404  # not "mlflow-model"


def test_v2_turned_off(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("sklearn_iris", v2=False)
    answer = _infer(url, {"inputs": _iris_inputs()})
    assert answer.status_code == 404
    assert "KILN_V2=false" in answer.json()["error"]
    assert httpx.get(url + "/ping").status_code == 200


def test_body_limit_and_metrics(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("sklearn_iris", max_body_size=1024)
    big = {"inputs": _iris_inputs(), "pad": "x" * 2000}
    answer = _infer(url, big)
    assert answer.status_code == 413
    assert "larger than the limit of 1024 bytes" in answer.json()["error"]
    assert _infer(url, {"inputs": _iris_inputs()}).status_code == 200
    metrics = httpx.get(url + "/metrics").text
    assert 'path="/v2/models/{name}/infer",status="413"' in metrics
    assert 'path="/v2/models/{name}/infer",status="200"' in metrics


def _slow(seconds: float) -> dict[str, Any]:
    return {"inputs": [{"name": "seconds", "datatype": "FP64", "shape": [1], "data": [seconds]}]}


def test_timeout_and_queue_limit_are_shared_with_invocations(process_server: Callable[..., Any]) -> None:
    server = process_server("slow_predict", KILN_REQUEST_TIMEOUT="2", KILN_MAX_QUEUE="1")
    quick = _infer(server.url, _slow(0.0))
    assert quick.status_code == 200, quick.text
    assert quick.json()["outputs"] == [
        {
            "name": "output-1",
            "shape": [1, 1],
            "datatype": "FP64",
            "parameters": {"content_type": "np"},
            "data": [0.0],
        }
    ]
    # /invocations holds the worker's only place: a V2 request is refused at once, in the V2 shape
    holder = threading.Thread(
        target=httpx.post,
        args=(server.url + "/invocations",),
        kwargs={"json": {"dataframe_records": [{"seconds": 1.0}]}, "timeout": 30},
    )
    holder.start()
    time.sleep(0.4)
    refused = _infer(server.url, _slow(0.0))
    holder.join()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "KILN_MAX_QUEUE=1" in refused.json()["error"]
    late = _infer(server.url, _slow(5.0))
    assert late.status_code == 504
    assert late.json()["error"].startswith("Request processing time exceeded limit: ")
