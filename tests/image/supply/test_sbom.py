"""The SBOM and provenance both backends make (``kiln.image.supply``), from hand-written facts: valid
CycloneDX 1.6, the same bytes for the same inputs, the base's and the added Debian packages told
apart, nothing from the host in it; and the Dockerfile that adds it to a Docker-built image."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tests.e2e.sbom_support import assert_valid
from tests.image.conftest import MakeEnv, check_golden
from tests.image.dockerfile.test_dockerfile import spec_for

from kiln import contract
from kiln.image.dockerfile.render import render_sbom_dockerfile
from kiln.image.supply.attach import BaseFacts, image_sbom, model_files, provenance
from kiln.image.supply.provenance import PREDICATE_TYPE
from kiln.image.supply.sbom import installed_packages, model_digest
from kiln.model.info import ModelInfo
from kiln.oci.types import Descriptor, Image

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

BASE_STATUS = """\
Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u7
Description: GNU C Library
 a folded line: Status: install ok installed

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
"""
NGINX = """
Package: nginx
Status: install ok installed
Architecture: amd64
Source: nginx (1.22.1-9)
Version: 1.22.1-9
"""
LOCK = (
    f"numpy==2.0.0 \\\n    --hash=sha256:{'1' * 64}\nscikit-learn==1.5.0 \\\n    --hash=sha256:{'2' * 64}\n"
)
"""As kiln writes one (kiln.env.locking): no index options, a hash per package."""
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def _base() -> BaseFacts:
    return BaseFacts("python:3.11-slim", "sha256:" + "a" * 64, "sha256:" + "b" * 64, BASE_STATUS, OS_RELEASE)


def _sbom(make_env: MakeEnv, model: ModelInfo, tmp_path: Path, epoch: int = 1700000000) -> bytes:
    spec = spec_for(make_env, model, "virtualenv")
    files = model_files(model.path, contract.MODEL_DIR)
    status = (BASE_STATUS + NGINX).encode()
    lock = tmp_path / "sbom.lock"
    lock.write_text(LOCK)
    env = make_env("virtualenv", lock_file=lock)
    return image_sbom(spec=spec, env=env, base=_base(), status=status, model=files, epoch=epoch)


def _by_purl(sbom: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["purl"]: c for c in sbom["components"] if "purl" in c}


def test_dpkg_status_gives_only_installed_packages() -> None:
    packages = installed_packages(BASE_STATUS + NGINX)
    assert [(p.name, p.architecture, p.version, p.source) for p in packages] == [
        ("libc6", "amd64", "2.36-9+deb12u7", None),
        ("nginx", "amd64", "1.22.1-9", "nginx"),
        ("tzdata", "all", "2024a-0+deb12u1", None),
    ]


def test_the_sbom_is_valid_and_lists_lock_kiln_debian_and_model(
    make_env: MakeEnv, model: ModelInfo, tmp_path: Path
) -> None:
    raw = _sbom(make_env, model, tmp_path)
    assert_valid(raw)
    sbom = json.loads(raw)
    assert sbom["specVersion"] == "1.6" and sbom["metadata"]["timestamp"].startswith("2023-11-14T22:13:20")
    components = _by_purl(sbom)
    assert components["pkg:pypi/numpy@2.0.0"]["hashes"] == [{"alg": "SHA-256", "content": "1" * 64}]
    assert "pkg:pypi/scikit-learn@1.5.0" in components and "pkg:pypi/kiln@0.1.0" in components
    origins = {
        c["name"]: {p["name"]: p["value"] for p in c["properties"]}["kiln:origin"]
        for purl, c in components.items()
        if purl.startswith("pkg:deb/")
    }
    assert origins == {"libc6": "base", "tzdata": "base", "nginx": "added"}
    assert "pkg:deb/debian/nginx@1.22.1-9?arch=amd64&distro=debian-12" in components
    (ml,) = [c for c in sbom["components"] if c["type"] == "machine-learning-model"]
    files = {f["name"] for f in ml["components"]}
    assert files == {
        f"{contract.MODEL_DIR}/{name}"
        for name in ("MLmodel", "python_env.yaml", "requirements.txt", "model.pkl")
    }
    assert ml["hashes"][0]["content"] == model_digest(model_files(model.path, contract.MODEL_DIR))
    assert str(tmp_path) not in raw.decode()  # nothing from the host


def test_the_same_facts_give_the_same_bytes(make_env: MakeEnv, model: ModelInfo, tmp_path: Path) -> None:
    first = _sbom(make_env, model, tmp_path)
    assert _sbom(make_env, model, tmp_path) == first
    other = _sbom(make_env, model, tmp_path, epoch=0)
    assert other != first and json.loads(other)["serialNumber"] != json.loads(first)["serialNumber"]


def test_the_docker_backend_adds_the_sbom_with_one_copy(make_env: MakeEnv, model: ModelInfo) -> None:
    spec = spec_for(make_env, model, "virtualenv")
    text = render_sbom_dockerfile(spec, "registry.example.com/team/iris:1")
    check_golden("sbom.Dockerfile", text)
    assert f"COPY sbom.cdx.json {contract.SBOM_PATH}\n" in text


def test_provenance_names_the_base_by_its_facts(make_env: MakeEnv, model: ModelInfo, tmp_path: Path) -> None:
    spec = spec_for(make_env, model, "virtualenv")
    sbom = _sbom(make_env, model, tmp_path)
    image = Image(b"{}", Descriptor(MEDIA_MANIFEST, "sha256:" + "d" * 64, 2), None, ())  # type: ignore[arg-type]
    raw = provenance(
        image, name="registry.example.com/team/iris:1", env=make_env("virtualenv"), base=_base(),
        spec=spec, model=model_files(model.path, contract.MODEL_DIR), sbom=sbom,
        parameters={"env_manager": "virtualenv"}, epoch=0,
    )  # fmt: skip
    statement = json.loads(raw)
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["subject"] == [
        {"name": "registry.example.com/team/iris", "digest": {"sha256": "d" * 64}}
    ]
    deps = {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["base image"] == {
        "name": "base image",
        "digest": {"sha256": "a" * 64},
        "uri": "docker://python:3.11-slim",
    }
    assert (
        statement["predicate"]["buildDefinition"]["internalParameters"]["baseConfigDigest"]
        == "sha256:" + "b" * 64
    )


def test_a_model_agnostic_image_has_no_model_component(make_env: MakeEnv, tmp_path: Path) -> None:
    spec = spec_for(make_env, None, "virtualenv")
    lock = tmp_path / "sbom.lock"
    lock.write_text(LOCK)
    env = make_env("virtualenv", lock_file=lock)
    raw = image_sbom(spec=spec, env=env, base=_base(), status=None, model=None, epoch=0)
    assert_valid(raw)
    components = json.loads(raw)["components"]
    assert not [c for c in components if c["type"] == "machine-learning-model"]
    debs = {c["name"] for c in components if c.get("purl", "").startswith("pkg:deb/")}
    assert debs == {"libc6", "tzdata"}  # no system-packages layer: the base's dpkg status stands


def test_a_conda_image_lists_every_conda_package_and_its_pip_section(
    make_env: MakeEnv, model: ModelInfo
) -> None:
    plain = make_env("conda")
    assert plain.conda is not None
    conda = dataclasses.replace(plain.conda, lock=dataclasses.replace(plain.conda.lock, pip_lock=LOCK))
    env = dataclasses.replace(plain, conda=conda)
    spec = spec_for(make_env, model, "conda")
    files = model_files(model.path, contract.MODEL_DIR)
    raw = image_sbom(spec=spec, env=env, base=_base(), status=None, model=files, epoch=1700000000)
    assert_valid(raw)
    components = _by_purl(json.loads(raw))
    listed = {purl: c for purl, c in components.items() if purl.startswith("pkg:conda/")}
    (python,) = conda.lock.packages
    assert list(listed) == [
        "pkg:conda/python@3.11.2?build=h0_kiln&channel=https://conda.example.com/kiln"
        "&subdir=linux-64&type=tar.bz2"
    ]
    (found,) = listed.values()
    assert found["hashes"] == [{"alg": "SHA-256", "content": python.sha256}]
    pip = {purl for purl in components if purl.startswith("pkg:pypi/") and "/kiln@" not in purl}
    assert pip == {"pkg:pypi/numpy@2.0.0", "pkg:pypi/scikit-learn@1.5.0"}  # the pip section's lock
