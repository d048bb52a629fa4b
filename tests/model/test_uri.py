"""Model URI strings: local or remote, and shown without credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import ModelURIError
from kiln.model.failures import detail
from kiln.model.uri import local_model_path, scheme_of, strip_credentials


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("http://user:secret@host:5000", "http://host:5000"),
        ("https://token@host/path", "https://host/path"),
        ("mlflow-artifacts://user:pw@host/1/x", "mlflow-artifacts://host/1/x"),
        ("s3://key:secret@bucket/model", "s3://bucket/model"),
        (
            "wasbs://container@account.blob.core.windows.net/m",
            "wasbs://container@account.blob.core.windows.net/m",
        ),
        ("runs:/abc/model", "runs:/abc/model"),
        ("models:/fraud@champion", "models:/fraud@champion"),
        (
            "https://b.s3.amazonaws.com/m?X-Amz-Signature=abc&x=1",
            "https://b.s3.amazonaws.com/m?X-Amz-Signature=****&x=1",
        ),
        (
            "https://a.blob.core.windows.net/c/m?sv=1&sig=abc",
            "https://a.blob.core.windows.net/c/m?sv=1&sig=****",
        ),
        ("API request to http://u:p@h:1/api failed", "API request to http://h:1/api failed"),
    ],
)
def test_strip_credentials(given: str, shown: str) -> None:
    assert strip_credentials(given) == shown


def test_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert local_model_path("model") == tmp_path / "model"
    assert local_model_path(str(tmp_path / "m")) == tmp_path / "m"
    assert local_model_path((tmp_path / "a b").as_uri()) == tmp_path / "a b"
    assert local_model_path("file://localhost/srv/model") == Path("/srv/model")
    for remote in ("runs:/abc/model", "models:/x/1", "mlflow-artifacts:/1/x", "s3://b/m", "http://h/m"):
        assert local_model_path(remote) is None


def test_file_uri_on_another_host() -> None:
    with pytest.raises(ModelURIError, match="must name a path on this machine"):
        local_model_path("file://otherhost/srv/model")


def test_scheme_of() -> None:
    assert scheme_of("Models:/x/1") == "models"
    assert scheme_of("C:/models/x") == ""  # a Windows drive letter is a path
    assert scheme_of("./model") == ""


def test_detail_drops_tracebacks_and_credentials() -> None:
    message = (
        "The following failures occurred while downloading one or more artifacts from http://u:p@h:1/x:\n"
        "##### File MLmodel #####\n"
        "404 Client Error: Not Found for url: http://u:p@h:1/x/MLmodel\n"
        "Traceback:\n"
        '  File "requests/models.py", line 1026, in raise_for_status\n'
    )
    shown = detail(RuntimeError(message))
    assert shown == (
        "The following failures occurred while downloading one or more artifacts from http://h:1/x: "
        "404 Client Error: Not Found for url: http://h:1/x/MLmodel"
    )
