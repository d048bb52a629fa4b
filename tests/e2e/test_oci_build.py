"""``kiln build --backend oci`` end to end: from a ``docker save`` archive and from a registry, loaded,
pushed, pulled and run by a real Docker engine; the same inputs give the same bytes.

The builds are shared by the module (a cold environment layer takes most of a minute):
``from_archive`` writes every output kind with the user's OCI cache; ``from_empty_cache``
builds the same inputs again into an empty cache; ``from_registry`` uses the base pushed
to a real local registry (skopeo copied it from the archive) and pushes the image there.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.docker_support import BASE_IMAGE
from tests.e2e.conftest import SECRET_TOKEN, SESSION, Built, Images, kiln
from tests.e2e.containers import container
from tests.env.conftest import PackageIndex
from tests.oci.oci_support import run, tool
from tests.registry_support import Registry, registry  # noqa: F401
from tests.runtime.scoring import iris_expected, iris_request

import kiln as kiln_package
from kiln.backends.docker.builder import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@dataclass(frozen=True)
class OciBuild:
    """One ``kiln build --backend oci`` and where its outputs went."""

    tag: str
    stdout: str
    stderr: str
    layout: Path | None = None
    archive: Path | None = None

    @property
    def manifest_digest(self) -> str:
        return next(
            line.split()[-1] for line in self.stdout.splitlines() if line.startswith("Manifest digest:")
        )


class Builds:
    """Runs kiln builds for the module and removes the images they load or pull.

    Every build runs the same snapshot of kiln's source (copied once): kiln's own layer is a
    wheel of the running kiln, and a working tree edited between two builds would rightly
    give two different images.
    """

    def __init__(self, builder: DockerBuilder, root: Path) -> None:
        self.builder = builder
        self.root = root
        self.tags: list[str] = []
        source = Path(kiln_package.__file__).parent
        shutil.copytree(source, root / "src" / "kiln", ignore=shutil.ignore_patterns("__pycache__"))
        self.env = {"PYTHONPATH": str(root / "src")}

    def build(
        self, name: str, model: Path, base: str, *outputs: str, env: dict[str, str] | None = None
    ) -> OciBuild:
        tag = f"kiln-e2e/oci-{name}:{SESSION}"
        self.tags.append(tag)
        args = ["build", "--backend", "oci", "-m", str(model), "-n", tag, "--base-image", base]
        for output in outputs:
            args += (
                ["--push", output.removeprefix("push:")]
                if output.startswith("push:")
                else ["--output", output]
            )
        result = kiln(*args, env={**self.env, **(env or {})})
        if result.returncode != 0:
            pytest.fail(f"kiln build {name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        layout = next((Path(o[4:]) for o in outputs if o.startswith("oci:")), None)
        archive = next((Path(o[15:]) for o in outputs if o.startswith("docker-archive:")), None)
        return OciBuild(tag, result.stdout, result.stderr, layout, archive)

    def remove_all(self) -> None:
        for tag in self.tags:
            self.builder.cli.run(["image", "rm", "--force", tag], timeout=300)


@pytest.fixture(scope="module")
def builds(docker_builder: DockerBuilder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
    made = Builds(docker_builder, tmp_path_factory.mktemp("oci-builds"))
    yield made
    made.remove_all()


@pytest.fixture(scope="module")
def base_archive(docker_builder: DockerBuilder, builds: Builds) -> Path:
    """``docker save`` of the test base image."""
    path = builds.root / "base.tar"
    saved = docker_builder.cli.run(["save", "--output", str(path), BASE_IMAGE], timeout=600)
    assert saved.returncode == 0, saved.stderr
    return path


@pytest.fixture(scope="module")
def from_archive(builds: Builds, base_archive: Path, model_dir: Callable[[str], Path]) -> OciBuild:
    root = builds.root / "a"
    return builds.build(
        "archive", model_dir("sklearn_iris"), f"docker-archive:{base_archive}",
        f"oci:{root}/layout", f"docker-archive:{root}/image.tar", "docker",
    )  # fmt: skip


@pytest.fixture(scope="module")
def from_empty_cache(builds: Builds, base_archive: Path, model_dir: Callable[[str], Path]) -> OciBuild:
    root = builds.root / "b"
    return builds.build(
        "archive", model_dir("sklearn_iris"), f"docker-archive:{base_archive}",
        f"oci:{root}/layout", f"docker-archive:{root}/image.tar",
        env={"KILN_OCI_CACHE": str(root / "empty-cache")},
    )  # fmt: skip


@pytest.fixture(scope="module")
def registry_base(registry: Registry, base_archive: Path) -> str:  # noqa: F811
    """The test base in the local registry, copied there by skopeo (its own compression, its own digests)."""
    reference = f"{registry.host}/kiln-test/python:3.11-slim"
    run(
        tool("skopeo"),
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        f"docker-archive:{base_archive}",
        f"docker://{reference}",
    )
    return reference


@pytest.fixture(scope="module")
def from_registry(
    builds: Builds,
    registry: Registry,  # noqa: F811
    registry_base: str,
    model_dir: Callable[[str], Path],
) -> OciBuild:
    return builds.build(
        "registry", model_dir("sklearn_iris"), registry_base, f"push:{registry.host}/kiln-e2e/iris:1"
    )


def test_archive_base_image_loads_and_serves(
    docker_builder: DockerBuilder, from_archive: OciBuild, model_dir: Callable[[str], Path]
) -> None:
    assert "Wrote docker" in from_archive.stdout and "with oci" in from_archive.stdout
    model = model_dir("sklearn_iris")
    with container(docker_builder.cli, from_archive.tag) as running:
        running.wait_ready()
        answer = running.post(iris_request(model))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": iris_expected(model)}


def test_same_inputs_same_bytes_with_an_empty_cache(
    from_archive: OciBuild, from_empty_cache: OciBuild
) -> None:
    assert from_empty_cache.manifest_digest == from_archive.manifest_digest
    assert "0 of 4 layers from cache" in from_empty_cache.stdout  # really rebuilt from nothing
    assert from_archive.archive is not None and from_empty_cache.archive is not None
    assert from_archive.archive.read_bytes() == from_empty_cache.archive.read_bytes()
    assert from_archive.layout is not None and from_empty_cache.layout is not None
    files = sorted(p.relative_to(from_archive.layout) for p in from_archive.layout.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(from_empty_cache.layout) for p in from_empty_cache.layout.rglob("*") if p.is_file()
    )
    for name in files:
        assert (from_archive.layout / name).read_bytes() == (from_empty_cache.layout / name).read_bytes(), (
            name
        )


def test_the_image_is_the_docker_backends_image(
    docker_builder: DockerBuilder, from_archive: OciBuild, iris_venv: Built
) -> None:
    """Same config as the Docker backend's image of the same model; same owners and modes where it matters."""
    ours, theirs = docker_builder.inspect(from_archive.tag), docker_builder.inspect(iris_venv.tag)
    assert ours is not None and theirs is not None
    assert ours["Id"] == "sha256:" + _config_digest(from_archive)  # docker load keeps kiln's image ID
    mine, docker = dict(ours["Config"]), dict(theirs["Config"])
    base_digest = mine["Labels"].pop("org.opencontainers.image.base.digest")
    assert base_digest.startswith("sha256:")
    # iris_venv is locked with an extra (token) index in pip's configuration, which the lock records
    lock = docker_builder.cli.run(
        ["run", "--rm", "--entrypoint", "cat", from_archive.tag, "/opt/kiln/requirements.lock"]
    )
    lock_digest = mine["Labels"].pop("io.kiln.lock.digest")
    assert lock_digest == "sha256:" + hashlib.sha256(lock.stdout.encode()).hexdigest()
    docker["Labels"] = {k: v for k, v in docker["Labels"].items() if k != "io.kiln.lock.digest"}
    for key in (
        "Entrypoint",
        "Cmd",
        "Env",
        "User",
        "WorkingDir",
        "ExposedPorts",
        "StopSignal",
        "Healthcheck",
        "Labels",
    ):
        assert mine.get(key) == docker.get(key), key
    paths = "/tmp /opt/ml/model /opt/ml/model/MLmodel /opt/kiln/venv /etc/passwd /lib"
    script = f"stat -c '%n %a %U:%G' {paths}; tail -1 /etc/passwd"
    shown = [
        docker_builder.cli.run(
            ["run", "--rm", "--user", "0", "--entrypoint", "/bin/sh", tag, "-c", script]
        ).stdout
        for tag in (from_archive.tag, iris_venv.tag)
    ]
    assert shown[0] == shown[1] and "/tmp 1777 root:root" in shown[0] and "/lib 777" in shown[0]


def test_independent_tools_read_the_outputs(from_archive: OciBuild) -> None:
    assert from_archive.layout is not None and from_archive.archive is not None
    tag = from_archive.tag.rsplit(":", 1)[1]
    inspected = json.loads(run(tool("skopeo"), "inspect", f"oci:{from_archive.layout}:{tag}"))
    assert inspected["Digest"] == from_archive.manifest_digest and inspected["Created"].startswith(
        "1970-01-01"
    )
    assert inspected["Labels"]["org.opencontainers.image.base.name"] == BASE_IMAGE
    archived = json.loads(run(tool("skopeo"), "inspect", f"docker-archive:{from_archive.archive}"))
    assert archived["Layers"] and archived["Labels"] == inspected["Labels"]
    stat = run(tool("umoci"), "stat", "--image", f"{from_archive.layout}:{tag}")
    assert "kiln: model" in stat and "kiln: Python environment" in stat
    manifest = json.loads(run(tool("skopeo"), "inspect", "--raw", f"oci:{from_archive.layout}:{tag}"))
    assert manifest["annotations"]["org.opencontainers.image.base.name"] == BASE_IMAGE
    with tarfile.open(from_archive.archive) as archive:
        assert {m.mtime for m in archive.getmembers()} == {0}


def test_registry_base_push_and_pull(
    docker_builder: DockerBuilder,
    registry: Registry,  # noqa: F811
    registry_base: str,
    from_archive: OciBuild,
    from_registry: OciBuild,
    model_dir: Callable[[str], Path],
) -> None:
    """Built on the registry's copy of the base and pushed next to it: the base's layers are never
    uploaded (mounted from its repository); docker pulls the image back and it serves."""
    assert "4 of 4 layers from cache" in from_registry.stdout  # same base config: the same kiln layers
    assert from_registry.manifest_digest != from_archive.manifest_digest  # skopeo compressed the base its way
    pushed = f"{registry.host}/kiln-e2e/iris:1"
    assert f"Pushed {pushed}@{from_registry.manifest_digest}" in from_registry.stdout
    base_layers = json.loads(
        run(tool("skopeo"), "inspect", "--tls-verify=false", f"docker://{registry_base}")
    )["Layers"]
    image = json.loads(run(tool("skopeo"), "inspect", "--tls-verify=false", f"docker://{pushed}"))
    assert (
        image["Digest"] == from_registry.manifest_digest
        and image["Layers"][: len(base_layers)] == base_layers
    )
    assert image["Labels"]["org.opencontainers.image.base.name"] == registry_base
    assert image["Labels"]["org.opencontainers.image.base.digest"].startswith("sha256:")
    pulled_tags = [pushed]
    try:
        pulled = docker_builder.cli.run(["pull", pushed], timeout=600)
        assert pulled.returncode == 0, pulled.stderr
        model = model_dir("sklearn_iris")
        with container(docker_builder.cli, pushed) as running:
            running.wait_ready()
            assert running.post(iris_request(model)).json() == {"predictions": iris_expected(model)}
    finally:
        for tag in pulled_tags:
            docker_builder.cli.run(["image", "rm", "--force", tag], timeout=120)


def test_a_model_only_change_uploads_the_model_layer_and_config(
    builds: Builds,
    registry: Registry,  # noqa: F811
    registry_base: str,
    from_registry: OciBuild,
    model_dir: Callable[[str], Path],
) -> None:
    mark = registry.mark()
    changed = builds.build(
        "registry-changed",
        model_dir("sklearn_iris_constant"),
        registry_base,
        f"push:{registry.host}/kiln-e2e/iris:2",
    )
    assert "3 of 4 layers from cache" in changed.stdout  # only the model layer was made
    uploads = registry.blob_uploads(since=mark)
    # the new model layer and config, and the image's new SBOM and provenance documents; nothing else
    assert len(uploads) == 4, uploads
    assert "4 blobs uploaded" in changed.stdout
    assert registry.mounts(since=mark) == []  # same repository: everything else was already there


def _config_digest(build: OciBuild) -> str:
    assert build.layout is not None
    index = json.loads((build.layout / "index.json").read_text())
    manifest = json.loads(
        (build.layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text()
    )
    return str(manifest["config"]["digest"][7:])


def test_the_probe_from_files_is_the_probe_from_running(
    docker_builder: DockerBuilder, base_archive: Path
) -> None:
    from kiln.backends.oci import OciBuilder

    from_files = OciBuilder().probe(f"docker-archive:{base_archive}")  # the user's cache, as kiln build
    from_running = docker_builder.probe(BASE_IMAGE)
    assert from_files.image_id == from_running.image_id  # the config digest is docker's image id
    for field in (
        "os_arch",
        "python",
        "python_version",
        "pythons",
        "glibc",
        "has_nginx",
        "has_apt",
        "pip_version",
        "os_release",
    ):
        assert getattr(from_files, field) == getattr(from_running, field), field


def test_the_docker_backend_pushes_with_kilns_client_and_kiln_push_agrees(
    docker_builder: DockerBuilder,
    registry: Registry,  # noqa: F811
    images: Images,
    iris_venv: Built,
    model_dir: Callable[[str], Path],
    token_index: PackageIndex,
) -> None:
    """``--backend docker --push``: built by the engine (cached: iris_venv's build), exported with
    ``docker save``, pushed by kiln; ``kiln push`` of the engine's image gives the same manifest
    (kiln gzips deterministically) and uploads nothing the second time."""
    target = f"{registry.host}/kiln-e2e/from-docker:1"
    index = token_index.url(f"user:{SECRET_TOKEN}")
    built = images.build(
        "iris-venv",
        "-m",
        str(model_dir("sklearn_iris")),
        "--push",
        target,
        env={"PIP_EXTRA_INDEX_URL": index},
    )
    digest = next(
        line.split()[-1] for line in built.stdout.splitlines() if line.startswith("Manifest digest:")
    )
    assert f"Pushed {target}@{digest}" in built.stdout
    manifest = json.loads(run(tool("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{target}"))
    image_id = docker_builder.inspect(iris_venv.tag)
    assert (
        image_id is not None and manifest["config"]["digest"] == image_id["Id"]
    )  # Docker's config, as saved
    again = kiln("push", iris_venv.tag, target)
    assert again.returncode == 0, again.stderr
    assert f"Pushed {target}@{digest}: 0 blobs uploaded" in again.stdout
    pulled = docker_builder.cli.run(["pull", target], timeout=600)
    try:
        assert pulled.returncode == 0, pulled.stderr
    finally:
        docker_builder.cli.run(["image", "rm", "--force", target], timeout=120)
