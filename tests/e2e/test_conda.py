"""``--env-manager conda`` end to end: a scikit-learn model whose conda.yaml names the test channel (its
bare URL; the host's .condarc reaches it through a token URL), solved, locked and fetched on the host,
installed offline, on a Debian base without Python.

The builds are shared by the module: one Docker build (run, read-only, another uid, stopped; its lock
and layers read), a model-agnostic one, one rebuild after a weights change (last), two ``--backend
oci`` builds into two empty caches (same bytes) of which one is loaded and run. The failures need no
image and stop before one.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from tests.conda_channel.fixtures import conda_channel, conda_channel_dir  # noqa: F401
from tests.conda_channel.models import CONDA_SPECS, ensure_no_python_base, save_conda_model
from tests.conda_channel.serve import ChannelServer
from tests.docker_support import BASE_IMAGE, assert_not_in_image
from tests.e2e.conftest import SESSION, kiln
from tests.e2e.containers import container
from tests.runtime.scoring import iris_expected, iris_request

import kiln as kiln_package
from kiln import contract
from kiln.backends.docker.builder import DockerBuilder
from kiln.image.facts import CONDA_LOCK_PATH, CONDA_PIP_LOCK_PATH

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]


@dataclass(frozen=True)
class Build:
    tag: str
    stdout: str
    stderr: str


class Builds:
    """``kiln build`` from a frozen copy of kiln's source (the tree is shared and edited while this runs),
    with the module's .condarc; the images are removed at the end."""

    def __init__(self, builder: DockerBuilder, root: Path, condarc: str) -> None:
        self.builder, self.root, self.tags = builder, root, list[str]()
        shutil.copytree(
            Path(kiln_package.__file__).parent,
            root / "src" / "kiln",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        (root / "condarc").write_text(condarc)
        self.env = {"PYTHONPATH": str(root / "src"), "CONDARC": str(root / "condarc")}

    def run(
        self, name: str, model: Path, *args: str, env: dict[str, str] | None = None, model_flag: str = "-m"
    ) -> subprocess.CompletedProcess[str]:
        tag = f"kiln-e2e/conda-{name}:{SESSION}"
        self.tags.append(tag)
        command = ("build", model_flag, str(model), "-n", tag, "--env-manager", "conda", *args)
        return kiln(*command, env={**self.env, **(env or {})})

    def build(self, name: str, model: Path, *args: str, env: dict[str, str] | None = None) -> Build:
        result = self.run(name, model, *args, env=env)
        if result.returncode != 0:
            pytest.fail(f"kiln build {name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return Build(self.tags[-1], result.stdout, result.stderr)

    def remove_all(self) -> None:
        for tag in self.tags:
            self.builder.cli.run(["image", "rm", "--force", tag], timeout=300)


@pytest.fixture(scope="module")
def builds(
    docker_builder: DockerBuilder,
    tmp_path_factory: pytest.TempPathFactory,
    conda_channel: ChannelServer,  # noqa: F811
) -> Iterator[Builds]:
    """The host's .condarc holds the credential: the model's conda.yaml names the channel by its bare
    URL (as a team's shared models would), the host reaches it through a token URL (a mirror)."""
    condarc = f"mirrored_channels:\n  {conda_channel.private_url}: ['{conda_channel.token_url}']\n"
    made = Builds(docker_builder, tmp_path_factory.mktemp("conda-builds"), condarc)
    yield made
    made.remove_all()


@pytest.fixture(scope="module")
def no_python_base(docker_builder: DockerBuilder) -> str:
    return ensure_no_python_base(docker_builder.cli.binary)


@pytest.fixture(scope="module")
def conda_model(tmp_path_factory: pytest.TempPathFactory, conda_channel: ChannelServer) -> Path:  # noqa: F811
    return save_conda_model(tmp_path_factory.mktemp("conda-model") / "iris", conda_channel.private_url)


@pytest.fixture(scope="module")
def docker_image(builds: Builds, conda_model: Path, no_python_base: str) -> Build:
    return builds.build("docker", conda_model, "--base-image", no_python_base)


def test_the_image_serves_from_a_base_without_python(
    builds: Builds, docker_image: Build, conda_model: Path
) -> None:
    cli = builds.builder.cli
    details = builds.builder.inspect(docker_image.tag)
    assert details is not None
    labels = details["Config"]["Labels"]
    assert labels["io.kiln.env-manager"] == "conda"
    assert details["Config"]["Entrypoint"][0] == "/opt/kiln/conda-env/bin/python"
    lock, pip_lock = (
        _read(builds, docker_image.tag, path) for path in (CONDA_LOCK_PATH, CONDA_PIP_LOCK_PATH)
    )
    lines = [line for line in lock.splitlines() if line and not line.startswith(("#", "@"))]
    names = {line.rsplit("/", 1)[-1].rsplit("-", 2)[0] for line in lines}
    assert {"python", "numpy", "scipy", "scikit-learn", "pandas", "pip"} <= names, lock
    assert all(len(line.split("#sha256:")[1]) == 64 for line in lines), lock
    assert "--hash=sha256:" in pip_lock and "mlflow-skinny==" in pip_lock
    digest = hashlib.sha256(lock.encode() + b"\0" + pip_lock.encode()).hexdigest()
    assert labels[contract.LABEL_LOCK_DIGEST] == f"sha256:{digest}"
    args = ("--user", "12345", "--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777")
    with container(cli, docker_image.tag, *args) as running:
        running.wait_ready()
        answer = running.post(iris_request(conda_model))
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == iris_expected(conda_model)
        stopped = running.docker("stop", "--time", "30", running.name)
        assert stopped.returncode == 0, stopped.stderr
        assert running.state()["ExitCode"] == 0, running.logs()[-3000:]


def test_no_channel_token_in_any_layer_config_or_history(
    builds: Builds,
    docker_image: Build,
    conda_channel: ChannelServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert conda_channel.token not in docker_image.stdout + docker_image.stderr
    assert_not_in_image(builds.builder, docker_image.tag, conda_channel.token, tmp_path)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unreachable", "cannot read the conda channel http://127.0.0.1:9/kiln"),
        ("missing", "'no-such-package' not found in the channels"),
        ("unsatisfiable", "cannot be satisfied"),
        ("not a mapping", "is not a YAML mapping"),
    ],
)
def test_errors_name_the_channel_or_package_and_build_nothing(
    builds: Builds,
    conda_channel: ChannelServer,  # noqa: F811
    tmp_path: Path,
    case: str,
    expected: str,
) -> None:
    channel, specs = conda_channel.url, list(CONDA_SPECS)
    if case == "unreachable":
        channel = "http://127.0.0.1:9/kiln"
    elif case == "missing":
        specs.append("no-such-package")
    elif case == "unsatisfiable":
        specs.append("numpy>=99")
    model = save_conda_model(tmp_path / "model", channel, specs=specs)
    if case == "not a mapping":
        (model / "conda.yaml").write_text(yaml.safe_dump(["python=3.11", "pip"]))
    result = builds.run(case.replace(" ", "-"), model, "--base-image", BASE_IMAGE)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert builds.builder.inspect(builds.tags[-1]) is None  # no image


def test_oci_backend_gives_the_same_bytes_twice_and_runs(
    builds: Builds,
    conda_model: Path,
    no_python_base: str,
    conda_channel: ChannelServer,  # noqa: F811
) -> None:
    archive = builds.root / "base.tar"
    saved = builds.builder.cli.run(["save", "--output", str(archive), no_python_base], timeout=600)
    assert saved.returncode == 0, saved.stderr
    base = f"docker-archive:{archive}"
    first = builds.build(
        "oci", conda_model, "--backend", "oci", "--base-image", base, "--output", "docker",
        env={"KILN_OCI_CACHE": str(builds.root / "oci-1")},
    )  # fmt: skip
    second = builds.build(
        "oci-again", conda_model, "--backend", "oci", "--base-image", base,
        "--output", f"oci:{builds.root / 'layout'}", env={"KILN_OCI_CACHE": str(builds.root / "oci-2")},
    )  # fmt: skip
    assert _manifest_digest(first.stdout) == _manifest_digest(second.stdout)
    assert conda_channel.token not in first.stdout + first.stderr
    assert_not_in_image(builds.builder, first.tag, conda_channel.token, builds.root)
    with container(builds.builder.cli, first.tag, "--user", "12345") as running:
        running.wait_ready()
        answer = running.post(iris_request(conda_model))
        assert answer.json()["predictions"] == iris_expected(conda_model)


def test_a_model_agnostic_image_with_the_models_conda_environment(
    builds: Builds, conda_model: Path, no_python_base: str
) -> None:
    """``--env-from`` with conda: the environment of the model, no model; the model mounted at start."""
    result = builds.run("agnostic", conda_model, "--base-image", no_python_base, model_flag="--env-from")
    assert result.returncode == 0, result.stderr
    mount = ("--volume", f"{conda_model}:{contract.MODEL_DIR}:ro")
    with container(builds.builder.cli, builds.tags[-1], *mount) as running:
        running.wait_ready()
        answer = running.post(iris_request(conda_model))
        assert answer.json()["predictions"] == iris_expected(conda_model), answer.text


def test_a_weights_change_rebuilds_only_the_model_layer(
    builds: Builds, docker_image: Build, conda_model: Path, no_python_base: str
) -> None:
    """Last in the module: it changes the shared model (the image tag then names the rebuilt image)."""
    before = _layers(builds.builder, docker_image.tag)
    retrained = save_conda_model(conda_model.parent / "retrained", "unused", c=0.01)
    shutil.copyfile(retrained / "model.skops", conda_model / "model.skops")
    builds.tags.pop()  # the same tag again
    again = builds.build("docker", conda_model, "--base-image", no_python_base)
    after = _layers(builds.builder, again.tag)
    # The layers below the model are the same ones; the model layer (and the SBOM layer kiln adds on
    # top of it, which lists the model's files) are new.
    assert len(after) == len(before)
    assert after[:-2] == before[:-2], "a layer below the model was rebuilt"
    assert after[-1] != before[-1]
    steps = re.findall(r"^    (\[\S+ \d+/\d+\] .*?)(  \(cached\))?$", again.stderr, re.MULTILINE)
    rebuilt = [name for name, cached in steps if not cached]
    assert [name for name in rebuilt if "COPY model" not in name and "sbom" not in name] == [], again.stderr
    assert any("COPY model /opt/ml/model" in name for name in rebuilt), again.stderr
    assert len(steps) >= 8


def _read(builds: Builds, tag: str, path: str) -> str:
    result = builds.builder.cli.run(["run", "--rm", "--entrypoint", "cat", tag, path])
    assert result.returncode == 0, result.stderr
    return result.stdout


def _layers(builder: DockerBuilder, tag: str) -> list[str]:
    details = builder.inspect(tag)
    assert details is not None
    return list(details["RootFS"]["Layers"])


def _manifest_digest(stdout: str) -> str:
    return next(line.split()[-1] for line in stdout.splitlines() if line.startswith("Manifest digest:"))
