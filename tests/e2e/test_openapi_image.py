"""A built image serves its model's OpenAPI document and /docs; KILN_OPENAPI=false turns both off."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import Built
from tests.e2e.containers import container
from tests.runtime.scoring import iris_columns

from kiln.backends.docker.builder import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_image_serves_its_models_openapi_document(
    iris_local: Built, docker_builder: DockerBuilder, model_dir: Callable[[str], Path]
) -> None:
    with container(docker_builder.cli, iris_local.tag) as running:
        running.wait_ready()
        document = httpx.get(running.url + "/openapi.json", timeout=30).json()
        schemas = document["components"]["schemas"]
        record = schemas["DataframeRecordsRequest"]["properties"]["dataframe_records"]["items"]
        assert list(record["properties"]) == iris_columns(model_dir("sklearn_iris"))
        example = document["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
        scored = running.post(json.dumps(example["examples"]["serving_input_example"]["value"]))
        assert scored.status_code == 200
        assert len(scored.json()["predictions"]) == 3
        page = httpx.get(running.url + "/docs", timeout=30)
        assert page.status_code == 200
        assert "script-src 'sha256-" in page.headers["content-security-policy"]


def test_image_with_openapi_off(iris_local: Built, docker_builder: DockerBuilder) -> None:
    with container(docker_builder.cli, iris_local.tag, "--env", "KILN_OPENAPI=false") as running:
        running.wait_ready()
        for path in ("/openapi.json", "/docs"):
            answer = httpx.get(running.url + path, timeout=30)
            assert answer.status_code == 404
            assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"
