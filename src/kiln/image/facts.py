"""Facts about every kiln image, defined once: the Dockerfile templates and the OCI layers render them.

What does not depend on the build lives here (healthcheck timings, the runtime user's
/etc/passwd line, the rule for the packages' tests that are dropped, the Python minors the
probes look for, the config's WORKDIR, port and stop signal); what does (the ENTRYPOINT and
healthcheck commands name the image's interpreter) is a field of ``ImageSpec``, made from the
functions here by ``build_image_spec``. Neither backend re-states any of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiln import contract

PYTHON_MINORS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
"""The ``pythonX.Y`` interpreters a base image is searched for (shell probe and file probe)."""

LIBRARY_DIRS = (
    "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
    "/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib",
)  # fmt: skip
"""Where the dynamic linker looks by default on Debian-like bases: the libraries a base provides
(both probes list the shared libraries found here)."""

WORKDIR = contract.KILN_HOME

START_IMPORTS = ("mlflow.pyfunc", "mlflow.types.schema", "mlflow.version")
"""What kiln's runtime imports from MLflow before the model's loader module: the packages that only
MLflow needs get bytecode for these imports' modules only (``kiln.image.finish``)."""

CONDA_LOCK_PATH = f"{contract.KILN_HOME}/conda.lock"
"""--env-manager conda: the @EXPLICIT lock (every conda package's URL and sha256) in the image."""
CONDA_PIP_LOCK_PATH = f"{contract.KILN_HOME}/conda-pip.lock"
"""--env-manager conda: the pip section's lock (with --hash lines) in the image."""
EXPOSED_PORT = contract.PORT
STOP_SIGNAL = contract.STOP_SIGNAL


@dataclass(frozen=True)
class Healthcheck:
    """The image's HEALTHCHECK: an exec-form command and its timings in seconds."""

    command: tuple[str, ...]
    interval: int = 10
    timeout: int = 5
    start_period: int = 60
    """Model loading can take a while; failures before this do not count."""
    retries: int = 3


def entrypoint(python: str) -> tuple[str, ...]:
    """``python -m kiln.runtime``: the image's ENTRYPOINT for its interpreter ``python``."""
    return (python, "-m", contract.RUNTIME_MODULE)


def healthcheck(python: str) -> Healthcheck:
    """The image's HEALTHCHECK, run by its interpreter ``python`` (standard library only)."""
    return Healthcheck((python, "-m", f"{contract.RUNTIME_MODULE}.healthcheck"))


def venv_command(python: str) -> str:
    """How the virtualenv env manager makes the venv with the image's ``python``; its pyvenv.cfg
    records this command (Python 3.11 and later), so the OCI backend writes the same."""
    return f"{python} -m venv --without-pip {contract.VENV_DIR}"


# --- the runtime user ------------------------------------------------------------------
USER_HOME = "/tmp"
"""The runtime user's home and $HOME: the only place the runtime writes."""
USER_GECOS = "kiln model server"
USER_SHELL = "/usr/sbin/nologin"


def passwd_line(uid: int | str, gid: int) -> str:
    """The runtime user's /etc/passwd line (no newline); ``uid`` may be a shell expansion such as
    ``${KILN_UID}`` where the Dockerfile takes it from a build argument."""
    return f"{contract.USER_NAME}:x:{uid}:{gid}:{USER_GECOS}:{USER_HOME}:{USER_SHELL}"


# --- the packages' tests, dropped unless --keep-package-tests -----------------------------
PRUNED_DIR = "tests"
PRUNED_UNDER = "/site-packages/"
"""The rule: a directory named ``tests`` anywhere below a ``site-packages`` directory."""

PRUNE_FIND = f"-type d -name {PRUNED_DIR} -path '*{PRUNED_UNDER}*'"
"""The rule as ``find`` predicates (the Dockerfile's env stage)."""


def is_pruned(path: str) -> bool:
    """The rule for one directory (absolute image path), as the OCI backend applies it."""
    return path.rsplit("/", 1)[-1] == PRUNED_DIR and PRUNED_UNDER in path
