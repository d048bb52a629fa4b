"""The image config and manifest: pure functions of their inputs, compared whole with golden JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tests.image.conftest import GOLDEN, UPDATE_GOLDEN, MakeEnv, python_slim

from kiln.image.base import plan_python
from kiln.image.dockerfile.render import render_dockerfile
from kiln.image.layers.config import History, image_config, merge_env
from kiln.image.spec import ImageOptions, ImageSpec, build_image_spec
from kiln.model.info import ModelInfo
from kiln.oci.canonical import canonical_json
from kiln.oci.manifest import assemble, describe
from kiln.oci.types import MEDIA_OCI_CONFIG, MEDIA_OCI_LAYER_GZIP, Blob, Descriptor

BASE_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-05-01T10:00:00.123456789Z",
    "config": {
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "PYTHON_VERSION=3.11.9"],
        "Cmd": ["python3"],
        "OnBuild": ["RUN echo child"],
        "Labels": {"org.example.vendor": "base", "io.kiln.version": "from-the-base"},
        "ExposedPorts": {"9000/tcp": {}},
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
    "history": [{"created": "2024-05-01T10:00:00Z", "created_by": "ADD rootfs.tar /"}],
}
BASE_DIGEST = "sha256:" + "b" * 64


def spec_for(model: ModelInfo, make_env: MakeEnv, **options: Any) -> ImageSpec:
    base = python_slim()
    fields = dict(base_image="docker-archive:/home/me/python-slim.tar", model_uri="models:/iris/3")
    fields.update(options)
    return build_image_spec(
        model, make_env("virtualenv"), base, plan_python("virtualenv", "3.11", base), ImageOptions(**fields)
    )


def config_for(spec: ImageSpec, epoch: int = 0) -> dict[str, Any]:
    history = [History("sha256:" + "c" * 64, "kiln: model")]
    return image_config(
        BASE_CONFIG, spec, history=history, epoch=epoch, base_name="python:3.11-slim", base_digest=BASE_DIGEST
    )


def check_json(name: str, value: Any) -> None:
    path = GOLDEN / name
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE_GOLDEN or not path.exists():
        path.write_text(text, encoding="utf-8")
        if not UPDATE_GOLDEN:
            pytest.fail(f"golden file {path} did not exist; written now: review and commit it")
    assert json.loads(path.read_text(encoding="utf-8")) == value, (
        f"{name} differs; KILN_UPDATE_GOLDEN=1 rewrites it"
    )


def test_config_matches_its_golden_file(model: ModelInfo, make_env: MakeEnv) -> None:
    check_json("oci-config.json", config_for(spec_for(model, make_env)))


def test_config_is_what_the_dockerfile_says(model: ModelInfo, make_env: MakeEnv) -> None:
    spec = spec_for(model, make_env)
    runtime = config_for(spec)["config"]
    dockerfile = render_dockerfile(spec)
    assert runtime["Entrypoint"] == json.loads(re.search(r"^ENTRYPOINT (.*)$", dockerfile, re.M)[1])  # type: ignore[index]
    assert "Cmd" not in runtime  # ENTRYPOINT resets the base's CMD
    assert "OnBuild" not in runtime
    flags = re.search(
        r"^HEALTHCHECK --interval=(\d+)s --timeout=(\d+)s --start-period=(\d+)s --retries=(\d+)",
        dockerfile,
        re.M,
    )
    assert flags is not None
    check = runtime["Healthcheck"]
    seconds = 1_000_000_000
    assert [
        check["Interval"] // seconds,
        check["Timeout"] // seconds,
        check["StartPeriod"] // seconds,
        check["Retries"],
    ] == [int(v) for v in flags.groups()]
    assert check["Test"] == ["CMD", *json.loads(re.search(r"CMD (\[.*\])", dockerfile)[1])]  # type: ignore[index]
    assert (
        runtime["User"] == "10001:0"
        and runtime["WorkingDir"] == "/opt/kiln"
        and runtime["StopSignal"] == "SIGTERM"
    )
    assert runtime["ExposedPorts"] == {"9000/tcp": {}, "8080/tcp": {}}


def test_env_expands_path_against_the_base_like_docker() -> None:
    merged = merge_env(
        ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
        [("PATH", "/opt/kiln/venv/bin:$PATH"), ("HOME", "/tmp"), ("X", "${HOME}/x:$UNSET")],
    )
    assert merged == ["PATH=/opt/kiln/venv/bin:/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/tmp", "X=/tmp/x:"]


def test_labels_name_the_base_without_its_path_and_pin_it(model: ModelInfo, make_env: MakeEnv) -> None:
    labels = config_for(spec_for(model, make_env))["config"]["Labels"]
    assert labels["org.opencontainers.image.base.name"] == "python:3.11-slim"
    assert labels["org.opencontainers.image.base.digest"] == BASE_DIGEST
    assert labels["org.example.vendor"] == "base" and labels["io.kiln.version"] != "from-the-base"
    user = config_for(spec_for(model, make_env, labels=(("org.opencontainers.image.base.name", "mine"),)))
    assert user["config"]["Labels"]["org.opencontainers.image.base.name"] == "mine"  # the user's label wins


def test_created_and_history_follow_source_date_epoch(model: ModelInfo, make_env: MakeEnv) -> None:
    config = config_for(spec_for(model, make_env), epoch=1700000000)
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert [h.get("created") for h in config["history"][1:]] == ["2023-11-14T22:13:20Z"] * 2
    assert config["rootfs"]["diff_ids"] == ["sha256:" + "a" * 64, "sha256:" + "c" * 64]
    assert sum(not h.get("empty_layer") for h in config["history"]) == len(config["rootfs"]["diff_ids"])


def test_canonical_json_and_the_manifest(model: ModelInfo, make_env: MakeEnv) -> None:
    config = config_for(spec_for(model, make_env))
    data = canonical_json(config)
    assert data == canonical_json(json.loads(data)) and data.startswith(b'{"architecture":"amd64","config":{')
    config_blob = Blob(describe(data, MEDIA_OCI_CONFIG))
    layer = Blob(Descriptor(MEDIA_OCI_LAYER_GZIP, "sha256:" + "d" * 64, 123), diff_id="sha256:" + "a" * 64)
    image = assemble(config_blob, [layer], {"org.opencontainers.image.base.digest": BASE_DIGEST})
    check_json("oci-manifest.json", json.loads(image.manifest))
    assert image.manifest == canonical_json(json.loads(image.manifest))
    assert image.image_id == config_blob.digest and image.digest == describe(image.manifest, "x").digest
