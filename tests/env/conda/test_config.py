"""conda.yaml and .condarc as kiln reads them: channels, credentials, mirrors, TLS; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.env.conda import parse_conda_environment, read_conda_environment, read_condarc
from kiln.env.conda.access import resolve_channels, split_credentials
from kiln.env.conda.condarc import SYSTEM_CA_BUNDLE, CondaConfig
from kiln.env.conda.errors import redact_channel_text
from kiln.errors import DependencyError


def test_an_mlflow_conda_yaml_gives_channels_specs_and_the_pip_section(tmp_path: Path) -> None:
    path = tmp_path / "conda.yaml"
    path.write_text(
        "name: mlflow-env\nchannels:\n- conda-forge\ndependencies:\n- python=3.11.2\n- pip<=26.3\n"
        "- pip:\n  - mlflow==3.17.2\n  - scikit-learn==1.9.1\n"
    )
    env = read_conda_environment(path)
    assert env.channels == ("conda-forge",)
    assert env.specs == ("python=3.11.2", "pip<=26.3")
    assert env.pip == ("mlflow==3.17.2", "scikit-learn==1.9.1")


@pytest.mark.parametrize("document", ["- python\n- pip\n", "just a string\n", ""])
def test_a_conda_yaml_that_is_not_a_mapping_is_refused_with_what_was_found(
    tmp_path: Path, document: str
) -> None:
    path = tmp_path / "conda.yaml"
    path.write_text(document)
    with pytest.raises(DependencyError) as caught:
        read_conda_environment(path)
    assert "is not a conda environment: expected a mapping" in caught.value.message
    assert str(path) in caught.value.message


def test_a_dependency_that_is_neither_a_spec_nor_a_pip_section_is_named() -> None:
    with pytest.raises(DependencyError, match=r"dependency \{'conda': \['x'\]\}"):
        parse_conda_environment({"dependencies": [{"conda": ["x"]}]}, origin="conda.yaml")


def test_condarc_files_merge_in_condas_order_and_condarc_env_wins(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".condarc").write_text(
        "channels: [from-home]\nchannel_alias: https://alias.example/\n"
        "custom_channels: {internal: 'https://internal.example/conda'}\n"
    )
    explicit = tmp_path / "explicit.condarc"
    explicit.write_text(
        "channels: [conda-forge, internal, defaults]\n"
        "mirrored_channels: {conda-forge: ['https://mirror.example/conda-forge']}\n"
        "proxy_servers: {https: 'http://proxy.example:3128'}\nssl_verify: false\n"
    )
    config = read_condarc({"HOME": str(home), "CONDARC": str(explicit)})
    assert config.files[-1] == str(explicit)
    assert config.channels == ("conda-forge", "internal", "defaults")
    assert config.channel_urls("conda-forge") == ("https://alias.example/conda-forge",)
    assert config.channel_urls("internal") == ("https://internal.example/conda/internal",)
    assert config.channel_urls("defaults")[0] == "https://repo.anaconda.com/pkgs/main"
    assert config.proxy_servers == {"https": "http://proxy.example:3128"}
    assert config.ssl_verify is False and config.ca_bundle is None
    channels = resolve_channels([], config)
    assert channels.channels[0].mirrors == ("https://mirror.example/conda-forge",)


def test_ssl_verify_defaults_to_the_system_bundle_and_a_missing_bundle_is_an_error(tmp_path: Path) -> None:
    assert CondaConfig().ca_bundle == SYSTEM_CA_BUNDLE
    rc = tmp_path / "condarc"
    rc.write_text("ssl_verify: /nowhere/ca.pem\n")
    with pytest.raises(DependencyError, match=r"names the CA bundle '/nowhere/ca\.pem', which is not a file"):
        read_condarc({"HOME": str(tmp_path), "CONDARC": str(rc)})
    with pytest.raises(DependencyError, match=r"\$CONDARC names '/nowhere/condarc'"):
        read_condarc({"HOME": str(tmp_path), "CONDARC": "/nowhere/condarc"})


def test_credentials_leave_the_channel_url() -> None:
    bare, basic = split_credentials("https://alice:s3cret@conda.example/private/")
    assert bare == "https://conda.example/private"
    assert basic is not None and basic.authentication == {
        "BasicHTTP": {"username": "alice", "password": "s3cret"}
    }
    bare, token = split_credentials("https://conda.example/t/tk-123/private")
    assert bare == "https://conda.example/private"
    assert token is not None and token.authentication == {"CondaToken": "tk-123"}


def test_channel_alias_credentials_reach_every_named_channel() -> None:
    config = CondaConfig(channel_alias="https://bob:pw@mirror.example/t/tk-9")
    channels = resolve_channels(["conda-forge"], config)
    assert channels.urls == ("https://mirror.example/conda-forge",)
    assert [c.authentication for c in channels.credentials] == [{"CondaToken": "tk-9"}]


def test_no_channels_anywhere_is_an_error_that_says_where_to_add_one() -> None:
    with pytest.raises(DependencyError, match="names no channels") as caught:
        resolve_channels([], CondaConfig())
    assert caught.value.hint and "conda.yaml" in caught.value.hint


def test_redaction_removes_passwords_and_token_paths() -> None:
    text = "GET https://u:p@h.example/x and https://h.example/t/tk-abc/private/noarch/repodata.json failed"
    assert redact_channel_text(text) == (
        "GET https://****@h.example/x and https://h.example/t/****/private/noarch/repodata.json failed"
    )
