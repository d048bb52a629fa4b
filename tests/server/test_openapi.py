"""``/openapi.json`` and ``/docs``: the document per fixture model (golden files), served and switched off."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis

import kiln
from kiln.model.info import read_model_info
from kiln.server.openapi import openapi_document
from kiln.settings import RuntimeSettings
from tests.runtime.running import free_port, running

GOLDEN = Path(__file__).parent / "golden" / "openapi"
UPDATE = os.environ.get("KILN_UPDATE_GOLDEN") == "1"
SCENARIOS = {
    "sklearn_iris": "named double columns, a serving input example",
    "sklearn_tensor": "one float64 tensor of shape [-1, 4]",
    "custom_pyfunc_params": "a double and a string column, two params with defaults",
    "llm_echo": "an LLM-style `messages` column and a `max_tokens` param",
    "pyfunc_type_hints": "a signature from type hints: `inputs` only",
    "predict_raises": "no signature: the generic shapes",
}


def _example(model: Path) -> Any:
    path = model / "serving_input_example.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _v2(model: Path) -> Any:
    """The model as the V2 endpoints describe it under the default name."""
    from mlflow.models import Model

    from kiln.server.v2.metadata import describe_model

    return describe_model(Model.load(str(model)), name="mlflow-model", version=None)


def _document(model: Path, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "v2": _v2(model),
        "version": "test",
        "max_body_size": 1048576,
        "request_timeout": 60.0,
        "metrics": True,
        "parquet": True,
        "serving_example": _example(model),
        **overrides,
    }
    return openapi_document(read_model_info(model), **options)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_document_matches_golden(scenario: str, model_dir: Callable[[str], Path]) -> None:
    text = json.dumps(_document(model_dir(scenario)), indent=2, ensure_ascii=False) + "\n"
    path = GOLDEN / f"{scenario}.json"
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} differs; rerun with KILN_UPDATE_GOLDEN=1, review the diff"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_document_is_valid_openapi_and_its_example_fits(
    scenario: str, model_dir: Callable[[str], Path]
) -> None:
    document = _document(model_dir(scenario))
    loaded = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in loaded.get_all_operations()]  # raises on an invalid operation
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {"GET /ping", "POST /invocations"}
    body = document["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
    validator = jsonschema_rs.Draft202012Validator({**body["schema"], "components": document["components"]})
    for example in body.get("examples", {}).values():
        assert validator.is_valid(example["value"]), example


def test_column_signature_gives_names_types_and_required(model_dir: Callable[[str], Path]) -> None:
    schemas = _document(model_dir("custom_pyfunc_params"))["components"]["schemas"]
    record = schemas["DataframeRecordsRequest"]["properties"]["dataframe_records"]["items"]
    assert record["properties"] == {"x": {"type": "number", "format": "double"}, "text": {"type": "string"}}
    assert record["required"] == ["x", "text"]
    params = schemas["InputsRequest"]["properties"]["params"]["properties"]
    assert params == {
        "multiplier": {"type": "number", "format": "double", "default": 1.0},
        "suffix": {"type": "string", "default": ""},
    }


def test_split_needs_columns_for_named_columns(
    kiln_url: Callable[..., str], model_dir: Callable[[str], Path]
) -> None:
    # schemathesis found the document allowing `data` without `columns`, which MLflow refuses
    # for a signature of named columns (its rows would have columns 0..n-1).
    schemas = _document(model_dir("sklearn_iris"))["components"]["schemas"]
    split = schemas["DataframeSplitRequest"]["properties"]["dataframe_split"]
    assert split["required"] == ["columns", "data"]
    body = {"dataframe_split": {"data": [[5.1, 3.5, 1.4, 0.2]]}}
    assert httpx.post(kiln_url("sklearn_iris") + "/invocations", json=body).status_code == 400


@pytest.mark.parametrize("scenario", ["sklearn_tensor", "llm_echo"])
def test_csv_only_where_the_signature_can_read_it(
    scenario: str, kiln_url: Callable[..., str], model_dir: Callable[[str], Path]
) -> None:
    # schemathesis found every CSV body refused for tensor and nested-type signatures (MLflow reads
    # CSV with the signature's pandas types, which those lack): the document no longer offers CSV.
    content = _document(model_dir(scenario))["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert "text/csv" not in content
    answer = httpx.post(
        kiln_url(scenario) + "/invocations",
        content=b"a,b,c,d\n1,2,3,4\n",
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == 400
    assert (
        "text/csv"
        in _document(model_dir("sklearn_iris"))["paths"]["/invocations"]["post"]["requestBody"]["content"]
    )


def test_tensor_signature_gives_the_shape(model_dir: Callable[[str], Path]) -> None:
    schemas = _document(model_dir("sklearn_tensor"))["components"]["schemas"]
    assert schemas["InputsRequest"]["properties"]["inputs"] == {
        "type": "array",
        "items": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
    }


def test_settings_shape_the_document(model_dir: Callable[[str], Path]) -> None:
    document = _document(model_dir("sklearn_iris"), metrics=False, parquet=False, max_body_size=2048)
    assert "/metrics" not in document["paths"]
    invocations = document["paths"]["/invocations"]["post"]
    assert set(invocations["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert "2048 bytes" in invocations["responses"]["413"]["description"]


def test_served_document_is_the_models(
    kiln_url: Callable[..., str], model_dir: Callable[[str], Path]
) -> None:
    model = model_dir("sklearn_iris")
    url = kiln_url("sklearn_iris", max_body_size=4096)
    answer = httpx.get(url + "/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    settings = RuntimeSettings(model_dir=str(model), max_body_size=4096)
    assert answer.json() == _document(
        model, version=kiln.__version__, max_body_size=4096, request_timeout=settings.request_timeout
    )
    # The example the document shows is a request the server answers.
    example = answer.json()["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
    scored = httpx.post(url + "/invocations", json=example["examples"]["serving_input_example"]["value"])
    assert scored.status_code == 200
    assert len(scored.json()["predictions"]) == 3


def test_docs_page_is_self_contained(kiln_url: Callable[..., str]) -> None:
    answer = httpx.get(kiln_url("sklearn_iris") + "/docs")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "http" not in answer.text.replace("http-equiv", "")  # no CDN, no external script
    assert 'fetch("openapi.json")' in answer.text


NODE = shutil.which("node")
SKELETONS = """
const fs = require("fs"), vm = require("vm");
const context = {fetch: () => new Promise(() => {}), document: {}};
vm.createContext(context);
vm.runInContext(fs.readFileSync(process.argv[2], "utf8"), context);
const doc = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
const json = doc.paths["/invocations"].post.requestBody.content["application/json"];
const out = {};
for (const ref of json.schema.anyOf) out[ref.$ref] = context.skeleton(doc, ref, 0);
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(NODE is None, reason="runs the page's own script with node, which is not installed")
@pytest.mark.parametrize("scenario", ["sklearn_iris", "custom_pyfunc_params"])
def test_docs_page_bodies_are_answered(scenario: str, kiln_url: Callable[..., str], tmp_path: Path) -> None:
    """The bodies /docs fills in from each request schema are requests the model answers."""
    url = kiln_url(scenario)
    page = httpx.get(url + "/docs").text
    (tmp_path / "page.js").write_text(page.split("<script>", 1)[1].split("</script>", 1)[0])
    (tmp_path / "openapi.json").write_bytes(httpx.get(url + "/openapi.json").content)
    (tmp_path / "skeletons.js").write_text(SKELETONS)
    assert NODE is not None
    result = subprocess.run(
        [NODE, str(tmp_path / "skeletons.js"), str(tmp_path / "page.js"), str(tmp_path / "openapi.json")],
        capture_output=True,
        text=True,
        check=True,
    )
    bodies = json.loads(result.stdout)
    assert len(bodies) == 4
    for ref, body in bodies.items():
        answer = httpx.post(url + "/invocations", json=body)
        assert answer.status_code == 200, (ref, body, answer.text)


def test_openapi_off_answers_json_404(kiln_url: Callable[..., str]) -> None:
    url = kiln_url("sklearn_iris", openapi=False)
    for path in ("/openapi.json", "/docs"):
        answer = httpx.get(url + path)
        assert answer.status_code == 404
        assert answer.json() == {
            "error_code": "ENDPOINT_NOT_FOUND",
            "message": f"the OpenAPI document is turned off (KILN_OPENAPI=false); no route for {path}",
            "error_class": "RESOURCE_NOT_FOUND",
            "sqlstate": "KAM00",
        }
    assert httpx.get(url + "/ping").status_code == 200


def test_one_setting_name_everywhere() -> None:
    assert RuntimeSettings.from_env({"KILN_OPENAPI": "false"}).openapi is False
    assert RuntimeSettings.from_env({}).openapi is True
    assert RuntimeSettings(openapi=False).to_env()["KILN_OPENAPI"] == "false"


@pytest.mark.slow
def test_kiln_serve_no_openapi(model_dir: Callable[[str], Path], tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "kiln", "serve", "-m", str(model_dir("sklearn_iris"))]
    command += ["--port", str(port), "--no-nginx", "--workers", "1", "--no-openapi"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_") and k != "DISABLE_NGINX"}
    with running(command, env, port, tmp_path, tmp_path / "logs") as run:
        run.wait_ready()
        assert run.get("/openapi.json").status_code == 404
        assert run.get("/docs").json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_v2_paths_are_listed_and_versioned_ones_with_a_version(model_dir: Callable[[str], Path]) -> None:
    from dataclasses import replace

    model = model_dir("sklearn_iris")
    paths = _document(model)["paths"]
    assert {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/mlflow-model/infer"} <= set(paths)
    assert not any("/versions/" in path for path in paths)
    versioned = _document(model, v2=replace(_v2(model), version="3"))["paths"]
    assert "/v2/models/mlflow-model/versions/3/infer" in versioned
    assert not any(path.startswith("/v2") for path in _document(model, v2=None)["paths"])
