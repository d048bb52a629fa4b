"""Tracking credentials are used to download and never appear in what resolve_model returns."""

from __future__ import annotations

import json

import pytest

from kiln.errors import ModelURIError
from kiln.model.resolve import ResolvedModel, resolve_model
from tests.model.conftest import Guarded, Registry
from tests.tracking import free_port

TOKEN = "kiln-test-secret-token"
PASSWORD = "kiln-test-secret-password"


def _everything_returned(resolved: ResolvedModel) -> str:
    return repr(resolved) + json.dumps(resolved.labels()) + str(resolved.tracking_uri)


@pytest.mark.parametrize("uri", ["runs:/{run_id}/model", "models:/kiln-iris@champion"])
def test_token_and_userinfo_stay_out(registry: Registry, uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    with_userinfo = registry.server.url.replace("http://", f"http://kiln:{PASSWORD}@")
    with resolve_model(uri.format(run_id=registry.run_id), tracking_uri=with_userinfo) as resolved:
        returned = _everything_returned(resolved)
        assert (resolved.path / "MLmodel").is_file()
    assert TOKEN not in returned and PASSWORD not in returned
    assert resolved.tracking_uri == registry.server.url


def test_basic_auth_login_from_the_environment(guarded: Guarded, monkeypatch: pytest.MonkeyPatch) -> None:
    assert guarded.server.admin is not None
    user, password = guarded.server.admin
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    with resolve_model("models:/guarded/1", tracking_uri=guarded.server.url) as resolved:
        assert resolved.model_version == "1" and resolved.run_id == guarded.run_id
        returned = _everything_returned(resolved)
    assert password not in returned


def test_basic_auth_login_in_the_tracking_uri(guarded: Guarded, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert guarded.server.admin is not None
    user, password = guarded.server.admin
    with_login = guarded.server.url.replace("http://", f"http://{user}:{password}@")
    with resolve_model(f"runs:/{guarded.run_id}/model", tracking_uri=with_login) as resolved:
        returned = _everything_returned(resolved)
    assert password not in returned
    assert resolved.tracking_uri == guarded.server.url


def test_errors_do_not_show_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    dead = f"127.0.0.1:{free_port()}"
    with (
        pytest.raises(ModelURIError) as caught,
        resolve_model("models:/kiln-iris/1", tracking_uri=f"http://kiln:{PASSWORD}@{dead}"),
    ):
        pytest.fail("resolved")
    text = caught.value.format()
    assert f"http://{dead}" in text
    assert PASSWORD not in text and TOKEN not in text
