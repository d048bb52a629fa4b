"""render_dockerfile(spec) -> str: named sections over the Jinja2 templates in dockerfile/templates/."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from functools import cache
from typing import Any

import jinja2

from kiln import contract
from kiln.image import facts
from kiln.image.finish import BytecodePlan
from kiln.image.spec import BUILD_DIR, BUNDLED_PYTHON_DIR, ImageSpec

KILN_STAGE = f"{contract.KILN_HOME}/kiln-stage"
"""The kiln stage installs kiln under this root; the final stage copies it over /."""
LOCAL_STAGE = f"{contract.KILN_HOME}/env-stage"
"""The local env manager's staging root (``pip install --root``)."""

PIP_FLAGS = (
    "--no-index --no-cache-dir --disable-pip-version-check --no-input \\\n"
    "      --progress-bar off --no-warn-script-location --root-user-action ignore"
)
UV_FLAGS = "--offline --no-index --no-cache"
UV_FLAGS_BUILDKIT = "--offline --no-index"
UV_CACHE = "/root/.cache/uv"
APT_CACHES = ("/var/cache/apt", "/var/lib/apt/lists")


def render_dockerfile(spec: ImageSpec) -> str:
    """The whole Dockerfile for ``spec``: builder stages, then the final image layer by layer."""
    sections = [
        header(spec),
        env_stage(spec),
        kiln_stage(spec),
        final_base(spec),
        system_packages(spec),
        environment(spec),
        kiln(spec),
        user(spec),
        config(spec),
        model(spec),
        labels(spec),
    ]
    return "\n".join(section for section in sections if section)


def header(spec: ImageSpec) -> str:
    return _render("header.j2", spec)


def env_stage(spec: ImageSpec) -> str:
    """The builder stage that makes the Python environment (never reaches the final image)."""
    files = spec.files
    if spec.env_manager == "conda":
        inputs = [files.conda_pip_lock, files.wheelhouse]
        caches = []
    else:
        inputs = [files.lock, files.wheelhouse, _installer_dir(spec), files.finish, files.stripped]
        caches = [UV_CACHE] if spec.env_manager == "uv" else []
    python = f"{contract.VENV_DIR}/bin/python" if spec.prefix else spec.build_python
    return _render(
        f"env_{spec.env_manager}.j2",
        spec,
        prune=_prune_tests(spec),
        finish=_finish(spec, python, staged_under=LOCAL_STAGE if spec.prefix is None else ""),
        **_inputs(spec, _present(inputs), caches),
    )


def _finish(spec: ImageSpec, python: str | None, *, staged_under: str) -> str:
    """A continuation of a builder stage's RUN that finishes what it installed (``--no-compile``)
    with ``kiln.image.finish``: the stripped libraries and pycs the OCI backend writes on the host."""
    if spec.files.finish is None or python is None:
        return ""
    plan = " ".join(spec.bytecode.arguments())
    if spec.strip_debug_info and spec.files.stripped:
        plan = f"--overlay {_build_path(spec.files.stripped)}" + (f" {plan}" if plan else "")
    site, first = spec.site_packages, ""
    if not site:  # local: the base's own Python, its site-packages as pip's --root staged them
        first = f' \\\n && site="$({python} -c \'import sysconfig; print(sysconfig.get_path("purelib"))\')"'
        site = "$site"
    where = f'--site-packages "{staged_under}{site}"' + (f' --shown-as "{site}"' if staged_under else "")
    command = f"{first} \\\n && {python} {_build_path(spec.files.finish)} {where}"
    return command + (f" \\\n      {plan}" if plan else "")


def _prune_tests(spec: ImageSpec) -> str:
    """A continuation of the env stage's RUN that drops the packages' own test suites."""
    if not spec.prune_package_tests:
        return ""
    root = spec.prefix or LOCAL_STAGE
    return f" \\\n && find {root} {facts.PRUNE_FIND} -prune -exec rm -rf {{}} +"


def kiln_stage(spec: ImageSpec) -> str:
    """A stage on top of the env stage that installs only the kiln wheel, under a staging root."""
    inputs = [_dir(spec.files.kiln_wheel)]
    if spec.buildkit and spec.installer == "pip-wheel":
        inputs.append(_dir(spec.files.installer or ""))
    if spec.buildkit and spec.files.finish:
        inputs.append(spec.files.finish)
    wheel = _build_path(spec.files.kiln_wheel)
    finish = _finish(
        replace(spec, bytecode=BytecodePlan(), strip_debug_info=False), spec.python, staged_under=KILN_STAGE
    )
    return _render("kiln_stage.j2", spec, wheel=wheel, finish=finish, **_inputs(spec, inputs, []))


def final_base(spec: ImageSpec) -> str:
    return _render("final_base.j2", spec)


def system_packages(spec: ImageSpec) -> str:
    """nginx (unless the base has it) and a JRE with --install-java, in one apt layer."""
    if not spec.system_packages:
        return ""
    return _render("system_packages.j2", spec)


def environment(spec: ImageSpec) -> str:
    return _render("environment.j2", spec)


def kiln(spec: ImageSpec) -> str:
    return _render("kiln.j2", spec)


def user(spec: ImageSpec) -> str:
    # The uid is a build argument (``--build-arg KILN_UID=...``), expanded by the shell.
    return _render("user.j2", spec, passwd_line=facts.passwd_line("${KILN_UID}", spec.gid))


def config(spec: ImageSpec) -> str:
    """ENV, EXPOSE, STOPSIGNAL, HEALTHCHECK, USER and ENTRYPOINT: no layers, before the model."""
    return _render("config.j2", spec)


def model(spec: ImageSpec) -> str:
    """The model's large files, a ``COPY`` (a layer) each, then the rest of the model in one."""
    if spec.files.model is None:
        return ""
    large = [
        (
            # BuildKit sets the image's mode, so the context can hold a hard link to the user's file
            # whatever its mode; the classic builder keeps the context file's (made right there).
            f"--chmod={item.mode:04o} " if spec.buildkit else "",
            json.dumps([f"{spec.files.large_model_files}/{item.path}", f"{contract.MODEL_DIR}/{item.path}"]),
        )
        for item in spec.model_layout.large
    ]
    return _render("model.j2", spec, large=large, threshold_mib=spec.model_layout.threshold >> 20)


def labels(spec: ImageSpec) -> str:
    return _render("labels.j2", spec)


SBOM_FILE = "sbom.cdx.json"
"""The SBOM in the context of ``render_sbom_dockerfile``'s build."""


def render_sbom_dockerfile(spec: ImageSpec, image: str) -> str:
    """The Dockerfile that adds the SBOM to ``image`` (built from ``spec``) at ``contract.SBOM_PATH``:
    the Docker backend knows the Debian packages only once apt-get has run, so this is a second build."""
    return _render("sbom.j2", spec, image=image, sbom_file=SBOM_FILE, sbom_path=contract.SBOM_PATH)


# --- helpers ------------------------------------------------------------------------------


def quote(value: str) -> str:
    """A Dockerfile double-quoted string: backslash, quote, ``$`` and newlines escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n")
    return f'"{escaped}"'


def _label_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    return " \\\n      ".join(f"{quote(key)}={quote(value)}" for key, value in pairs)


def _env_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    # Values here are kiln's own (paths, flags); $PATH must stay expandable, so no quoting.
    return " \\\n    ".join(f"{key}={value}" for key, value in pairs)


def _inputs(spec: ImageSpec, inputs: list[str], caches: list[str]) -> dict[str, str]:
    """How a builder stage sees context files: BuildKit bind mounts (and cache mounts) on its
    RUN, or COPY lines before it for the classic builder."""
    if spec.buildkit:
        mounts = [f"--mount=type=bind,source={path},target={_build_path(path)}" for path in inputs]
        mounts += [f"--mount=type=cache,target={target},sharing=locked" for target in caches]
        return {"copy_inputs": "", "mounts": "".join(f"{m} \\\n    " for m in mounts)}
    copies = "".join(f"COPY {path} {_build_path(path)}\n" for path in inputs)
    return {"copy_inputs": copies, "mounts": ""}


def _build_path(source: str | None) -> str:
    """Where a context path ``kiln/x`` appears inside builder stages."""
    if source is None:
        raise ValueError("no context path")
    return f"{BUILD_DIR}/{source.removeprefix('kiln/')}"


def _dir(path: str) -> str:
    return path.rsplit("/", 1)[0]


def _installer_dir(spec: ImageSpec) -> str | None:
    return _dir(spec.files.installer) if spec.files.installer else None


def _present(items: Iterable[str | None]) -> list[str]:
    return [item for item in items if item]


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kiln.image.dockerfile", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["build_path"] = _build_path
    env.filters["label_pairs"] = _label_pairs
    env.filters["env_pairs"] = _env_pairs
    env.filters["venv_command"] = facts.venv_command
    env.filters["tojson"] = lambda value: json.dumps(value)
    return env


def _render(template: str, spec: ImageSpec, **extra: Any) -> str:
    pip = (
        "-m pip"
        if spec.installer == "pip-module"
        else f"{_build_path(spec.files.installer)}/pip"
        if spec.installer == "pip-wheel"
        else ""
    )
    values: dict[str, Any] = {
        "spec": spec,
        "venv": contract.VENV_DIR,
        "prefix": spec.prefix,
        "kiln_home": contract.KILN_HOME,
        "lock_path": contract.LOCK_PATH,
        "conda_lock_path": facts.CONDA_LOCK_PATH,
        "conda_pip_lock_path": facts.CONDA_PIP_LOCK_PATH,
        "model_dir": contract.MODEL_DIR,
        "installer_dir": contract.INSTALLER_DIR,
        "install_missing_env": contract.ENV_INSTALL_MISSING[0],
        "bundled_python_dir": BUNDLED_PYTHON_DIR,
        "kiln_stage": KILN_STAGE,
        "stage": LOCAL_STAGE,
        "pip": pip,
        "pip_flags": PIP_FLAGS,
        "uv_flags": UV_FLAGS_BUILDKIT if spec.buildkit else UV_FLAGS,
        "workdir": facts.WORKDIR,
        "port": facts.EXPOSED_PORT,
        "stop_signal": facts.STOP_SIGNAL,
    }
    values.update(extra)
    return _environment().get_template(template).render(values)
