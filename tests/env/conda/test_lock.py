"""Solving and locking against the real loopback channel: the explicit lock, credentials, errors."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
from rattler.explicit_environment import ExplicitEnvironmentSpec

from kiln.env.conda import (
    CondaConfig,
    CondaLock,
    fetch_conda_packages,
    lock_conda_environment,
    parse_conda_environment,
)
from kiln.env.spec import TargetPlatform
from kiln.errors import DependencyError
from tests.conda_channel.serve import ChannelServer

# The first test on a machine builds the channel (compiles CPython): minutes, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TARGET = TargetPlatform("3.11")


def lock(channel: str, *specs: str, pip: tuple[str, ...] = (), cache: Path) -> CondaLock:
    env = parse_conda_environment(
        {"channels": [channel], "dependencies": [*specs, {"pip": list(pip)}] if pip else list(specs)},
        origin="conda.yaml",
    )
    return lock_conda_environment(env, target=TARGET, config=CondaConfig(), cache_dir=cache)


def test_the_lock_names_every_package_with_its_url_and_the_sha256_of_the_served_file(
    conda_channel: ChannelServer, conda_channel_dir: Path, tmp_path: Path
) -> None:
    locked = lock(conda_channel.url, "python=3.11", "scikit-learn", "kiln-probe", cache=tmp_path)
    names = [package.name for package in locked.packages]
    assert names == sorted(names)
    assert {"python", "scikit-learn", "numpy", "scipy", "joblib", "kiln-probe"} <= set(names)
    assert locked.python_version == "3.11" and locked.subdir == "linux-64"
    for package in locked.packages:
        served = conda_channel_dir / package.subdir / package.filename
        assert package.url == f"{conda_channel.url}/{package.subdir}/{package.filename}"
        assert package.sha256 == hashlib.sha256(served.read_bytes()).hexdigest()
    text = locked.explicit()
    parsed = ExplicitEnvironmentSpec.from_str(text)
    assert str(parsed.platform) == "linux-64"
    assert [entry.url for entry in parsed.packages] == [p.explicit_line for p in locked.packages]


def test_a_second_lock_of_the_same_inputs_is_the_cached_solve(
    conda_channel: ChannelServer, tmp_path: Path
) -> None:
    first = lock(conda_channel.url, "python=3.11", "kiln-probe", cache=tmp_path)
    conda_channel.requests.clear()
    again = lock(conda_channel.url, "python=3.11", "kiln-probe", cache=tmp_path)
    assert again == first and again.digest == first.digest
    assert conda_channel.requests == []  # the channel was not asked again
    assert lock(conda_channel.url, "python=3.11", "six", cache=tmp_path).package("six") is not None


def test_the_pip_section_is_locked_with_hashes_without_what_conda_installs(
    conda_channel: ChannelServer, tmp_path: Path
) -> None:
    locked = lock(
        conda_channel.url, "python=3.11", "scikit-learn", pip=("scikit-learn==1.9.1", "packaging"),
        cache=tmp_path,
    )  # fmt: skip
    assert "packaging==" in locked.pip_lock and "--hash=sha256:" in locked.pip_lock
    for conda_side in ("scikit-learn==", "numpy==", "scipy==", "joblib==", "cloudpickle=="):
        assert conda_side not in locked.pip_lock
    assert locked.package("pip") is not None  # added: the pip section needs it


@pytest.mark.parametrize("how", ["basic_auth_url", "token_url"])
def test_a_private_channel_is_locked_by_its_bare_url_and_the_credential_is_nowhere(
    conda_channel: ChannelServer, tmp_path: Path, how: str
) -> None:
    conda_channel.requests.clear()
    locked = lock(getattr(conda_channel, how), "python=3.11", "six", cache=tmp_path)
    text = locked.explicit()
    assert locked.channels == (conda_channel.private_url,)
    assert all(p.url.startswith(conda_channel.private_url + "/") for p in locked.packages)
    for secret in (conda_channel.password, conda_channel.token, conda_channel.user):
        assert secret not in text and secret not in repr(locked)
    if how == "basic_auth_url":
        assert any(r.authorization.startswith("Basic ") for r in conda_channel.requests)
    else:
        assert any(r.path.startswith(f"/t/{conda_channel.token}/private/") for r in conda_channel.requests)


def test_an_unreachable_channel_is_named(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DependencyError) as caught:
        lock(f"http://127.0.0.1:{port}/nowhere", "python", cache=tmp_path)
    assert f"cannot read the conda channel http://127.0.0.1:{port}/nowhere" in caught.value.message
    assert caught.value.hint and ".condarc" in caught.value.hint


def test_wrong_credentials_say_401_and_show_no_password(conda_channel: ChannelServer, tmp_path: Path) -> None:
    url = conda_channel.basic_auth_url.replace(conda_channel.password, "wrong-password-123")
    with pytest.raises(DependencyError) as caught:
        lock(url, "python", cache=tmp_path)
    shown = caught.value.format()
    assert f"cannot read the conda channel {conda_channel.private_url}: HTTP 401" in shown
    assert "wrong-password-123" not in shown and conda_channel.user not in shown


def test_a_package_no_channel_has_is_named_with_the_channels(
    conda_channel: ChannelServer, tmp_path: Path
) -> None:
    with pytest.raises(DependencyError) as caught:
        lock(conda_channel.url, "python=3.11", "no-such-package>=1", cache=tmp_path)
    assert caught.value.message == (
        f"conda package 'no-such-package>=1' not found in the channels {conda_channel.url} "
        "(for linux-64 or noarch)"
    )


def test_unsatisfiable_specs_carry_the_solvers_explanation(
    conda_channel: ChannelServer, tmp_path: Path
) -> None:
    with pytest.raises(DependencyError) as caught:
        lock(conda_channel.url, "python=3.11", "scikit-learn", "numpy<2", cache=tmp_path)
    assert "the conda specs cannot be satisfied for linux-64" in caught.value.message
    assert "'numpy<2'" in caught.value.message
    assert caught.value.hint and "rattler says:" in caught.value.hint and "numpy" in caught.value.hint


def test_channels_from_the_hosts_condarc_with_its_alias_and_mirrors(
    conda_channel: ChannelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conda.yaml says 'conda-forge'; .condarc sends it through a mirror (here: the loopback channel)."""
    condarc = tmp_path / "condarc"
    condarc.write_text(
        "channels: [conda-forge]\n"
        "channel_alias: https://conda.example.invalid\n"
        f"mirrored_channels:\n  conda-forge: ['{conda_channel.url}']\n"
    )
    monkeypatch.setenv("CONDARC", str(condarc))
    monkeypatch.setenv("HOME", str(tmp_path))
    env = parse_conda_environment({"dependencies": ["python=3.11", "six"]}, origin="conda.yaml")
    conda_channel.requests.clear()
    locked = lock_conda_environment(env, target=TARGET, cache_dir=tmp_path)
    assert locked.channels == ("https://conda.example.invalid/conda-forge",)
    six = locked.package("six")
    assert six is not None and six.url.startswith("https://conda.example.invalid/conda-forge/noarch/")
    fetched = fetch_conda_packages(locked, tmp_path / "pkgs", cache_dir=tmp_path)  # through the mirror too
    assert len(fetched.files) == len(locked.packages)
    assert any(r.path == f"/channel/noarch/{six.filename}" for r in conda_channel.requests)
