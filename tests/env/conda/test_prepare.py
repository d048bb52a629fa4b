"""prepare_conda_environment: an MLflow-style conda.yaml (conda packages + a pip section) made ready on
the host, then installed with no network: conda packages by rattler, the pip section by the
environment's own pip from the wheelhouse with --require-hashes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kiln.env.conda import CondaConfig, install_conda_environment, parse_conda_environment
from kiln.env.conda.prepare import CONDA_LOCK_NAME, PIP_LOCK_NAME, prepare_conda_environment
from kiln.env.spec import TargetPlatform
from tests.conda_channel.serve import ChannelServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_conda_packages_and_the_pip_section_install_offline(
    conda_channel: ChannelServer, tmp_path: Path
) -> None:
    env = parse_conda_environment(
        {
            "channels": [conda_channel.basic_auth_url],
            "dependencies": ["python=3.11.2", "pip<=26.3", "kiln-probe", {"pip": ["packaging==24.2"]}],
        },
        origin="conda.yaml",
    )
    work = tmp_path / "context"
    prepared = prepare_conda_environment(
        env, target=TargetPlatform("3.11"), work_dir=work, config=CondaConfig(), cache_dir=tmp_path / "cache"
    )
    assert prepared.target.python_version == "3.11"
    assert (work / CONDA_LOCK_NAME).read_text() == prepared.lock.explicit()
    assert prepared.pip_lock_file == work / PIP_LOCK_NAME
    assert "packaging==24.2" in prepared.pip_lock_file.read_text()
    assert prepared.wheelhouse is not None
    assert [wheel.name for wheel in prepared.wheelhouse.iterdir()] == ["packaging-24.2-py3-none-any.whl"]
    assert sorted(p.name for p in prepared.packages_dir.iterdir()) == sorted(
        p.filename for p in prepared.lock.packages
    )
    for path in work.rglob("*"):  # the build context holds no credential
        if path.is_file() and path.suffix in ("", ".lock", ".json", ".txt"):
            assert conda_channel.password not in path.read_text(errors="replace")

    prefix = tmp_path / "env"
    install_conda_environment(prepared.lock, prepared.packages_dir, prefix, prefix=str(prefix))
    pip_install = [
        str(prefix / "bin" / "python"), "-m", "pip", "install", "--no-index", "--find-links",
        str(prepared.wheelhouse), "--require-hashes", "--no-deps", "--disable-pip-version-check",
        "-r", str(prepared.pip_lock_file),
    ]  # fmt: skip
    isolated = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_CONFIG_FILE": "/dev/null"}
    result = subprocess.run(pip_install, capture_output=True, text=True, env=isolated)
    assert result.returncode == 0, result.stderr
    check = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import packaging, kilnprobe; print(packaging.__version__)"],
        capture_output=True, text=True, env=isolated,
    )  # fmt: skip
    assert check.stdout.strip() == "24.2", check.stderr
    for record in (prefix / "conda-meta").iterdir():  # nor does the environment's metadata
        text = record.read_text()
        assert conda_channel.password not in text and conda_channel.user not in text
        if record.suffix == ".json":
            assert f'"url": "{conda_channel.private_url}/' in text
