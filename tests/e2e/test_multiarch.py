"""``kiln build --backend oci --platform linux/amd64,linux/arm64`` end to end: one image index, pushed to
a real registry and read back by skopeo and Docker; the arm64 image run under qemu-user-static; each
image's SBOM validated against the CycloneDX schema and compared with what the image really holds;
SBOM and provenance attached as referrers (distribution 2.8 has no referrers API: the
``sha256-<digest>`` fallback tag is what this exercises); the same bytes from an empty cache.

The base is a two-platform OCI layout made from the test base and its arm64 twin
(``tests/oci/multiarch.py``). The model is sklearn_iris with its requirements trimmed to what it
imports (MLflow versions that record torch, pytest and rich from the saving environment would
otherwise ask for torch's ``+cpu`` build, which has no arm64 wheel: that error is tested too, with
the requirement added on purpose).
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.docker_support import BASE_IMAGE
from tests.e2e.conftest import SESSION, kiln
from tests.e2e.containers import container
from tests.e2e.sbom_support import assert_lists_the_image, assert_valid
from tests.oci.multiarch import (
    AARCH64_ELF,
    ARM64_BASE,
    binfmt_ready,
    elf_machine,
    ensure_arm64_base,
    write_multiarch_layout,
)
from tests.oci.oci_support import run, tool
from tests.registry_support import Registry, registry  # noqa: F401
from tests.runtime.scoring import iris_expected, iris_request

import kiln as kiln_package
from kiln import contract
from kiln.backends.docker.builder import DockerBuilder
from kiln.oci.peek import read_layer_file
from kiln.oci.registry import RegistryClient, list_referrers

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CYCLONEDX = "application/vnd.cyclonedx+json"
IN_TOTO = "application/vnd.in-toto+json"
UNUSED = ("torch", "pytest", "rich", "tqdm")


@dataclass(frozen=True)
class Multi:
    tag: str
    stdout: str
    layout: Path
    pushed: str | None

    def top(self) -> dict[str, Any]:
        entries = json.loads((self.layout / "index.json").read_text())["manifests"]
        (entry,) = [e for e in entries if not e.get("artifactType")]
        return dict(entry)

    def blob(self, digest: str) -> bytes:
        return (self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()

    def manifests(self) -> dict[str, dict[str, Any]]:
        """Each platform's manifest (``amd64``, ``arm64``) with its ``digest`` added."""
        index = json.loads(self.blob(self.top()["digest"]))
        return {
            m["platform"]["architecture"]: {**json.loads(self.blob(m["digest"])), "digest": m["digest"]}
            for m in index["manifests"]
        }

    def sbom(self, arch: str) -> bytes:
        last = self.manifests()[arch]["layers"][-1]["digest"]
        data = read_layer_file(self.layout / "blobs" / "sha256" / last[7:], contract.SBOM_PATH)
        assert data is not None
        return data


@pytest.fixture(scope="module")
def arm64_base(docker_builder: DockerBuilder) -> str:
    """The arm64 twin of the test base (made with debootstrap under qemu when missing)."""
    reason = binfmt_ready()
    present = docker_builder.inspect(ARM64_BASE) is not None
    if reason is not None and not present:
        pytest.skip(f"no arm64 base and none can be made here: {reason}")
    ensure_arm64_base(docker_builder.cli.binary)
    return ARM64_BASE


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multiarch")
    shutil.copytree(
        Path(kiln_package.__file__).parent,
        root / "src" / "kiln",
        ignore=shutil.ignore_patterns("__pycache__"),
    )  # every build runs the same snapshot of kiln (kiln's layer is a wheel of it)
    return root


@pytest.fixture(scope="module")
def base_layout(docker_builder: DockerBuilder, arm64_base: str, work: Path) -> str:
    saves = {}
    for arch, image in (("amd64", BASE_IMAGE), ("arm64", arm64_base)):
        saves[arch] = work / f"{arch}.tar"
        saved = docker_builder.cli.run(["save", "--output", str(saves[arch]), image], timeout=600)
        assert saved.returncode == 0, saved.stderr
    write_multiarch_layout(work / "base", saves)
    return f"oci:{work / 'base'}:3.11-slim"


@pytest.fixture(scope="module")
def model(model_dir: Callable[[str], Path], work: Path) -> Path:
    copy = work / "sklearn_iris"
    shutil.copytree(model_dir("sklearn_iris"), copy)
    lines = (copy / "requirements.txt").read_text().splitlines()
    (copy / "requirements.txt").write_text(
        "".join(f"{line}\n" for line in lines if line.split("==")[0] not in UNUSED)
    )
    return copy


def _build(
    work: Path,
    base: str,
    model: Path,
    name: str,
    *targets: str,
    env: dict[str, str] | None = None,
    platforms: str = "linux/amd64,linux/arm64",
) -> Any:
    args = ["build", "--backend", "oci", "--platform", platforms, "-m", str(model)]
    args += ["-n", f"kiln-e2e/multi-{name}:{SESSION}", "--base-image", base]
    for target in targets:
        args += ["--push", target[5:]] if target.startswith("push:") else ["--output", target]
    return kiln(*args, env={"PYTHONPATH": str(work / "src"), **(env or {})}, timeout=1800)


@pytest.fixture(scope="module")
def multi(
    docker_builder: DockerBuilder,
    registry: Registry,  # noqa: F811
    base_layout: str,
    model: Path,
    work: Path,
) -> Iterator[Multi]:
    pushed = f"{registry.host}/kiln-e2e/multi:1"
    done = _build(work, base_layout, model, "a", f"oci:{work}/a", "docker", f"push:{pushed}")
    assert done.returncode == 0, done.stdout + done.stderr
    yield Multi(f"kiln-e2e/multi-a:{SESSION}", done.stdout, work / "a", pushed)
    for tag in (f"kiln-e2e/multi-a:{SESSION}", pushed):
        docker_builder.cli.run(["image", "rm", "--force", tag], timeout=120)


@pytest.fixture(scope="module")
def again(multi: Multi, base_layout: str, model: Path, work: Path) -> Multi:
    """The same inputs into an empty cache; each platform also as its own docker-archive."""
    done = _build(
        work, base_layout, model, "a", f"oci:{work}/b", f"docker-archive:{work}/b-{{platform}}.tar",
        env={"KILN_OCI_CACHE": str(work / "empty-cache")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return Multi(multi.tag, done.stdout, work / "b", None)


def test_one_index_pushed_and_read_back_by_skopeo(multi: Multi, work: Path) -> None:
    assert multi.pushed is not None
    raw = json.loads(
        run(tool("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{multi.pushed}")
    )
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = [(m["platform"]["architecture"], m["digest"]) for m in raw["manifests"]]
    manifests = multi.manifests()
    assert platforms == [("amd64", manifests["amd64"]["digest"]), ("arm64", manifests["arm64"]["digest"])]
    # The index is what the tag names; each platform's manifest digest is printed to pin it.
    assert f"Image index digest: {multi.top()['digest']}" in multi.stdout
    for arch, variant in (("amd64", ""), ("arm64", "/v8")):
        assert f"  linux/{arch}{variant}: {manifests[arch]['digest']}" in multi.stdout
    assert f"SBOM: {contract.SBOM_PATH} in the image; SBOM and provenance attached" in multi.stdout
    copied = work / "copied-arm64"
    run(
        tool("skopeo"), "--override-arch", "arm64", "copy", "--quiet", "--src-tls-verify=false",
        f"docker://{multi.pushed}", f"oci:{copied}:arm64",
    )  # fmt: skip
    (entry,) = json.loads((copied / "index.json").read_text())["manifests"]
    copy = json.loads((copied / "blobs" / "sha256" / entry["digest"][7:]).read_text())
    # skopeo may re-encode the base's plain-tar layers on the way; the config (the image) is the same
    assert copy["config"]["digest"] == manifests["arm64"]["config"]["digest"]


def test_each_platform_has_its_own_packages_and_aarch64_binaries(multi: Multi) -> None:
    for arch, machine in (("amd64", 62), ("arm64", AARCH64_ELF)):
        env_layer = multi.manifests()[arch]["layers"][-3]["digest"]  # system, env, kiln, model
        with tarfile.open(multi.layout / "blobs" / "sha256" / env_layer[7:]) as layer:
            member = next(m for m in layer.getmembers() if m.name.endswith(".so") and "numpy" in m.name)
            handle = layer.extractfile(member)
            assert handle is not None
            assert elf_machine(handle.read(64)) == machine, (arch, member.name)
    sboms = {arch: json.loads(multi.sbom(arch)) for arch in ("amd64", "arm64")}
    debs = {
        arch: {c.get("purl", "") for c in s["components"] if c.get("purl", "").startswith("pkg:deb/")}
        for arch, s in sboms.items()
    }
    assert all("arch=arm64" in purl or "arch=all" in purl for purl in debs["arm64"])
    assert any("pkg:deb/debian/nginx@" in purl for purl in debs["arm64"])


def test_the_arm64_image_serves_under_qemu(docker_builder: DockerBuilder, multi: Multi, model: Path) -> None:
    reason = binfmt_ready()
    if reason is not None:
        pytest.skip(f"arm64 binaries cannot run here ({reason}); their ELF headers are checked above")
    assert multi.pushed is not None
    pulled = docker_builder.cli.run(["pull", "--platform", "linux/arm64", multi.pushed], timeout=600)
    assert pulled.returncode == 0, pulled.stderr
    arch = docker_builder.cli.run(["image", "inspect", "--format", "{{.Architecture}}", multi.pushed])
    assert arch.stdout.strip() == "arm64"
    with container(docker_builder.cli, multi.pushed, "--platform", "linux/arm64") as running:
        running.wait_ready(timeout=600)  # every instruction emulated: the model loads slowly
        machine = running.docker("exec", running.name, "uname", "-m").stdout.strip()
        assert machine == "aarch64"
        answer = running.post(iris_request(model))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": iris_expected(model)}
    # The arm64 image's SBOM against the arm64 image itself (its dpkg database, its venv, its model).
    sbom = assert_lists_the_image(docker_builder, multi.pushed, "linux/arm64")
    assert sbom == json.loads(multi.sbom("arm64"))


def test_the_sbom_is_valid_and_lists_exactly_what_the_image_holds(
    docker_builder: DockerBuilder, multi: Multi
) -> None:
    for arch in ("amd64", "arm64"):
        assert_valid(multi.sbom(arch))
    # The amd64 image was loaded into Docker (the host's platform): ask the image itself.
    sbom = assert_lists_the_image(docker_builder, multi.tag)
    assert sbom == json.loads(multi.sbom("amd64"))


def test_sbom_and_provenance_are_referrers_of_each_image(multi: Multi) -> None:
    assert multi.pushed is not None
    registry_host, repository = multi.pushed.split("/", 1)
    repository = repository.rsplit(":", 1)[0]
    for arch, manifest in multi.manifests().items():
        with RegistryClient(registry_host) as client:
            found = list_referrers(client, repository, manifest["digest"])
            statement = json.loads(client.get_manifest(repository, found[1]["digest"]).data)
        assert [e["artifactType"] for e in found] == [CYCLONEDX, IN_TOTO], arch
        tag = f"sha256-{manifest['digest'][7:]}"  # distribution 2.8: the referrers tag schema
        listed = json.loads(
            run(
                tool("skopeo"),
                "inspect",
                "--raw",
                "--tls-verify=false",
                f"docker://{registry_host}/{repository}:{tag}",
            )
        )
        assert [m["digest"] for m in listed["manifests"]] == [e["digest"] for e in found]
        assert statement["subject"]["digest"] == manifest["digest"]
        provenance = json.loads(multi.blob(statement["layers"][0]["digest"]))
        assert provenance["predicateType"] == "https://slsa.dev/provenance/v1"
        assert provenance["subject"][0]["digest"]["sha256"] == manifest["digest"][7:]
        definition = provenance["predicate"]["buildDefinition"]
        names = [d["name"] for d in definition["resolvedDependencies"]]
        assert names == ["model", "lock", "base image", "kiln"]
        assert definition["externalParameters"]["platform"].startswith(f"linux/{arch}")
        assert provenance["predicate"]["runDetails"]["builder"]["version"]["kiln"] == kiln_package.__version__


def test_same_inputs_same_bytes_from_an_empty_cache(multi: Multi, again: Multi, work: Path) -> None:
    assert "0 of 8 layers from cache" in again.stdout
    assert again.top()["digest"] == multi.top()["digest"]
    files = sorted(p.relative_to(multi.layout) for p in multi.layout.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again.layout) for p in again.layout.rglob("*") if p.is_file())
    for name in files:  # every layer, config, manifest, the index, each SBOM and provenance
        assert (multi.layout / name).read_bytes() == (again.layout / name).read_bytes(), name
    for arch in ("amd64", "arm64/v8"):
        archive = work / f"b-linux-{arch.replace('/', '-')}.tar"
        inspected = json.loads(run(tool("skopeo"), "inspect", f"docker-archive:{archive}"))
        assert inspected["Architecture"] == arch.split("/")[0]


def test_kiln_push_copies_the_layout_with_its_referrers(multi: Multi, registry: Registry) -> None:  # noqa: F811
    target = f"{registry.host}/kiln-e2e/copied:1"
    name = multi.top()["annotations"]["org.opencontainers.image.ref.name"]  # the tag of -n
    done = kiln("push", f"oci:{multi.layout}:{name}", target)
    assert done.returncode == 0, done.stderr
    assert "4 artifacts attached" in done.stdout
    raw = json.loads(run(tool("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{target}"))
    assert raw == json.loads(multi.blob(multi.top()["digest"]))


def test_a_package_without_a_wheel_for_one_platform_names_both(
    base_layout: str, model: Path, work: Path
) -> None:
    torch = work / "with-torch"
    shutil.copytree(model, torch)
    with (torch / "requirements.txt").open("a") as requirements:
        requirements.write("torch==2.13.0+cpu\n")  # PyTorch's CPU build: x86_64 wheels only
    done = _build(work, base_layout, torch, "torch", f"oci:{work}/never", platforms="linux/arm64,linux/amd64")
    assert done.returncode != 0
    assert "linux/arm64" in done.stderr and "torch==2.13.0+cpu" in done.stderr, done.stderr
