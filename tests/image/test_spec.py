"""ImageSpec decisions: interpreter plan, system packages, installers, and the errors for what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.image.conftest import MakeEnv, python_slim

from kiln.errors import BuildError, ModelError
from kiln.image.base import default_base_image, plan_python, python_minor, requested_python
from kiln.image.spec import ImageOptions, build_image_spec, lock_digest
from kiln.model.info import ModelInfo, read_model_info


def test_requested_python_comes_from_python_env_yaml(model: ModelInfo) -> None:
    (model.path / "python_env.yaml").write_text("python: 3.12.1\n")
    assert requested_python(read_model_info(model.path)) == "3.12"


def test_requested_python_falls_back_to_mlmodel(model: ModelInfo) -> None:
    (model.path / "python_env.yaml").unlink()
    assert requested_python(read_model_info(model.path)) == "3.11"


def test_requested_python_refuses_a_python_env_outside_the_model(model: ModelInfo, tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("python: 3.9\n")
    (model.path / "python_env.yaml").unlink()
    (model.path / "python_env.yaml").symlink_to(outside)
    with pytest.raises(ModelError, match="outside the model directory"):
        requested_python(read_model_info(model.path))


def test_bad_python_version_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="'three' is not a version"):
        python_minor("three")


def test_default_base_images() -> None:
    assert default_base_image("virtualenv", "3.10") == "python:3.10-slim"
    assert default_base_image("uv", "3.12") == "python:3.12-slim"
    assert default_base_image("conda", "3.12") == "debian:bookworm-slim"


def test_plan_uses_the_base_python_when_it_matches() -> None:
    plan = plan_python("virtualenv", "3.11", python_slim())
    assert (plan.version, plan.interpreter, plan.bundled) == ("3.11", "/usr/local/bin/python3", False)


def test_plan_bundles_when_the_base_lacks_the_version() -> None:
    plan = plan_python("uv", "3.10", python_slim())
    assert plan.bundled and plan.version == "3.10"


def test_local_uses_the_base_python_whatever_the_model_wants() -> None:
    plan = plan_python("local", "3.10", python_slim())
    assert (plan.version, plan.interpreter, plan.bundled) == ("3.11", "/usr/local/bin/python3", False)


def test_local_without_python_in_the_base_is_refused() -> None:
    with pytest.raises(BuildError, match="has no python3 or python on PATH"):
        plan_python("local", "3.11", python_slim(python=None, python_version=None))


def test_no_apt_and_no_nginx_is_refused(make_env: MakeEnv, model: ModelInfo) -> None:
    base = python_slim(image="alpine-python", has_apt=False)
    with pytest.raises(BuildError, match="has no apt-get, so kiln cannot install nginx"):
        build_image_spec(
            model, make_env("virtualenv"), base, plan_python("virtualenv", "3.11", base), _options(base.image)
        )


def test_uv_without_a_uv_wheel_is_refused(make_env: MakeEnv, model: ModelInfo) -> None:
    base = python_slim()
    env = make_env("uv", installer_wheel=None)
    with pytest.raises(BuildError, match="needs a uv wheel"):
        build_image_spec(model, env, base, plan_python("uv", "3.11", base), _options(base.image))


def test_local_falls_back_to_the_base_pip(make_env: MakeEnv, model: ModelInfo) -> None:
    base = python_slim(pip_version="24.0")
    env = make_env("local", installer_wheel=None)
    spec = build_image_spec(model, env, base, plan_python("local", "3.11", base), _options(base.image))
    assert spec.installer == "pip-module"


def test_lock_digest_is_of_the_scrubbed_lock(make_env: MakeEnv) -> None:
    import hashlib

    env = make_env("virtualenv")
    assert env.lock_file is not None
    text = env.lock_file.read_text()
    assert "--index-url" in text
    digest = lock_digest(env)
    scrubbed = "".join(line + "\n" for line in text.splitlines() if not line.startswith("--index-url"))
    assert digest == "sha256:" + hashlib.sha256(scrubbed.encode()).hexdigest()


def test_system_packages_follow_nginx_and_the_jre_and_are_labelled(
    make_env: MakeEnv, model: ModelInfo
) -> None:
    base = python_slim()
    options = ImageOptions(
        base_image=base.image, install_java=True, system_packages=("libgomp1", "nginx", "curl")
    )
    spec = build_image_spec(
        model, make_env("virtualenv"), base, plan_python("virtualenv", "3.11", base), options
    )
    assert spec.system_packages == ("nginx", "default-jre-headless", "libgomp1", "curl")
    labels = dict(spec.labels)
    assert labels["io.kiln.system-packages"] == "nginx,default-jre-headless,libgomp1,curl"
    assert labels["io.kiln.accelerator"] == "cpu"
    assert "NVIDIA_VISIBLE_DEVICES" not in dict(spec.environment)


def test_a_cuda_image_says_so_to_the_nvidia_toolkit_and_the_runtime(
    make_env: MakeEnv, model: ModelInfo
) -> None:
    base = python_slim()
    options = ImageOptions(base_image=base.image, accelerator="cuda")
    spec = build_image_spec(
        model, make_env("virtualenv"), base, plan_python("virtualenv", "3.11", base), options
    )
    environment = dict(spec.environment)
    assert environment["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert environment["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert environment["KILN_ACCELERATOR"] == "cuda"
    assert dict(spec.labels)["io.kiln.accelerator"] == "cuda"


def _options(base_image: str) -> ImageOptions:
    return ImageOptions(base_image=base_image, model_uri=str(Path("/models/m")))
