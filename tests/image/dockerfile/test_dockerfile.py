"""render_dockerfile against golden files: one per env manager, builder and option."""

from __future__ import annotations

import re

import pytest
from tests.image.conftest import MakeEnv, check_golden, python_slim

from kiln import contract
from kiln.image.base import plan_python
from kiln.image.dockerfile.render import quote, render_dockerfile
from kiln.image.probe import BaseImageInfo
from kiln.image.spec import ImageOptions, ImageSpec, build_image_spec
from kiln.model.info import ModelInfo

MODEL_URI = "https://user:secret-pass@models.example.com/iris"


def spec_for(
    make_env: MakeEnv,
    model: ModelInfo | None,
    env_manager: str,
    *,
    buildkit: bool = True,
    base: BaseImageInfo | None = None,
    install_java: bool = False,
    keep_package_tests: bool = False,
    labels: tuple[tuple[str, str], ...] = (),
) -> ImageSpec:
    base = base or python_slim()
    env = make_env(env_manager)
    plan = plan_python(env.env_manager, "3.11", base)
    options = ImageOptions(
        base_image=base.image,
        install_java=install_java,
        keep_package_tests=keep_package_tests,
        buildkit=buildkit,
        model_uri=MODEL_URI if model is not None else None,
        labels=labels,
    )
    return build_image_spec(model, env, base, plan, options)


@pytest.mark.parametrize("env_manager", ["virtualenv", "uv", "local", "conda"])
@pytest.mark.parametrize("buildkit", [True, False], ids=["buildkit", "classic"])
def test_each_env_manager_and_builder(
    make_env: MakeEnv, model: ModelInfo, env_manager: str, buildkit: bool
) -> None:
    base = python_slim(image="debian:bookworm-slim", python=None, python_version=None)
    spec = spec_for(
        make_env, model, env_manager, buildkit=buildkit, base=base if env_manager == "conda" else None
    )
    text = render_dockerfile(spec)
    check_golden(f"{env_manager}-{'buildkit' if buildkit else 'classic'}.Dockerfile", text)


def test_install_java(make_env: MakeEnv, model: ModelInfo) -> None:
    text = render_dockerfile(spec_for(make_env, model, "virtualenv", install_java=True))
    check_golden("virtualenv-java.Dockerfile", text)
    assert "default-jre-headless" in text and "JAVA_HOME=/usr/lib/jvm/default-java" in text


def test_package_tests_are_dropped_unless_kept(make_env: MakeEnv, model: ModelInfo) -> None:
    prune = "find /opt/kiln/venv -type d -name tests -path '*/site-packages/*' -prune -exec rm -rf {} +"
    assert prune in render_dockerfile(spec_for(make_env, model, "virtualenv"))
    kept = render_dockerfile(spec_for(make_env, model, "virtualenv", keep_package_tests=True))
    assert "find " not in kept
    finish = "/opt/kiln/venv/bin/python /tmp/kiln-build/finish.py"
    assert f"-r /tmp/kiln-build/requirements.lock \\\n && {finish}" in kept


def test_no_java_without_the_option(make_env: MakeEnv, model: ModelInfo) -> None:
    for env_manager in ("virtualenv", "uv", "local"):
        text = render_dockerfile(spec_for(make_env, model, env_manager))
        assert not re.search(r"jre|jdk|java", text, re.IGNORECASE), env_manager


def test_base_with_nginx_needs_no_apt_layer(make_env: MakeEnv, model: ModelInfo) -> None:
    spec = spec_for(make_env, model, "virtualenv", base=python_slim(has_nginx=True))
    text = render_dockerfile(spec)
    check_golden("virtualenv-base-has-nginx.Dockerfile", text)
    assert "apt-get" not in text


def test_base_with_another_python_gets_a_bundled_interpreter(make_env: MakeEnv, model: ModelInfo) -> None:
    base = python_slim(image="python:3.12-slim", python_version="3.12.4")
    spec = spec_for(make_env, model, "uv", base=base)
    assert spec.bundled_python and spec.build_python == "/opt/kiln/python/bin/python3"
    check_golden("uv-bundled-python.Dockerfile", render_dockerfile(spec))


def test_base_with_a_versioned_interpreter_uses_it(make_env: MakeEnv, model: ModelInfo) -> None:
    base = python_slim(python_version="3.12.4", pythons={"3.11": "/usr/bin/python3.11"})
    spec = spec_for(make_env, model, "virtualenv", base=base)
    assert not spec.bundled_python
    assert "/usr/bin/python3.11 -m venv --without-pip /opt/kiln/venv" in render_dockerfile(spec)


def test_model_agnostic(make_env: MakeEnv) -> None:
    spec = spec_for(make_env, None, "virtualenv")
    text = render_dockerfile(spec)
    check_golden("virtualenv-model-agnostic.Dockerfile", text)
    assert "COPY model" not in text
    assert f"{contract.ENV_MODEL_AGNOSTIC[0]}=true" in text
    assert f"COPY kiln/installer/pip-24.2-py3-none-any.whl {contract.INSTALLER_DIR}/" in text


def test_layer_order_model_last(make_env: MakeEnv, model: ModelInfo) -> None:
    text = render_dockerfile(spec_for(make_env, model, "virtualenv"))
    final = text[text.index("AS image") :]
    order = [
        final.index("apt-get install"),
        final.index("COPY --from=env /opt/kiln/venv"),
        final.index("COPY --from=kiln"),
        final.index("ENTRYPOINT"),
        final.index(f"COPY model {contract.MODEL_DIR}"),
        final.index("LABEL"),
    ]
    assert order == sorted(order)
    # Nothing after the model creates a layer: only LABEL follows it.
    after_model = final[final.index("COPY model") :].splitlines()[1:]
    assert all(not line.startswith(("RUN", "COPY", "ADD")) for line in after_model)


def test_image_config(make_env: MakeEnv, model: ModelInfo) -> None:
    text = render_dockerfile(spec_for(make_env, model, "virtualenv"))
    assert f"EXPOSE {contract.PORT}" in text
    assert "STOPSIGNAL SIGTERM" in text
    assert "USER ${KILN_UID}:0" in text and f"ARG KILN_UID={contract.UID}" in text
    assert 'HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \\\n    CMD ["/opt' in text
    assert 'ENTRYPOINT ["/opt/kiln/venv/bin/python", "-m", "kiln.runtime"]' in text


def test_labels_redact_credentials_and_user_labels_win(make_env: MakeEnv, model: ModelInfo) -> None:
    spec = spec_for(
        make_env, model, "virtualenv", labels=(("team", 'ml "core"'), (contract.LABEL_VERSION, "x"))
    )
    labels = dict(spec.labels)
    assert labels[contract.LABEL_MODEL_URI] == "https://models.example.com/iris"
    assert labels[contract.LABEL_MODEL_RUN_ID] == "0123456789abcdef"
    assert labels[contract.LABEL_VERSION] == "x"
    assert labels["team"] == 'ml "core"'
    assert labels[contract.LABEL_LOCK_DIGEST].startswith("sha256:")
    text = render_dockerfile(spec)
    assert '"team"="ml \\"core\\""' in text
    assert "secret-pass" not in text and "kiln-golden-token" not in text


def test_quote_escapes_what_docker_expands() -> None:
    assert quote('a"b\\c$HOME\nx') == '"a\\"b\\\\c\\$HOME\\nx"'


def test_classic_dockerfile_has_no_buildkit_syntax(make_env: MakeEnv, model: ModelInfo) -> None:
    for env_manager in ("virtualenv", "uv", "local", "conda"):
        text = render_dockerfile(spec_for(make_env, model, env_manager, buildkit=False))
        assert "--mount" not in text and "# syntax" not in text, env_manager
