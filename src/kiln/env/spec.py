"""EnvSpec: the frozen result of resolving a model's environment for one image platform."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.contract import EnvManager
from kiln.env.accelerators import Accelerator

if TYPE_CHECKING:
    from kiln.env.conda.prepare import PreparedCondaEnvironment


@dataclass(frozen=True)
class TargetPlatform:
    """What the image's interpreter is: decides which wheels fit."""

    python_version: str
    """``3.11`` (major.minor) of the interpreter that will run in the image."""
    os_arch: str = "linux/amd64"
    """Docker platform string: ``linux/amd64`` or ``linux/arm64``."""
    glibc: str = "2.36"
    """The base image's glibc, for manylinux tags (bookworm: 2.36)."""


@dataclass(frozen=True)
class EnvSpec:
    """A locked, fetched environment ready to be installed offline into an image.

    Produced on the host by ``kiln.env``; consumed by ``kiln.image`` to lay out the
    build context and render the Dockerfile. Nothing here needs network access later.
    """

    env_manager: EnvManager
    target: TargetPlatform
    requirements: tuple[str, ...]
    """The top-level requirements that were resolved (model's + kiln runtime's)."""
    lock_file: Path | None
    """A pip requirements file pinning every package with ``--hash`` lines; None for conda."""
    lock_digest: str
    """``sha256:<hex>`` of the lock file (or of the conda lock) for the image label."""
    wheelhouse: Path | None
    """A directory holding exactly the wheels the lock names; None for conda."""
    kiln_wheel: Path
    """A wheel of the running kiln, installed with ``--no-deps`` in its own layer."""
    installer_wheel: Path | None = None
    """The installer used inside the build stage: a ``pip`` wheel (virtualenv) or a ``uv``
    wheel for the target platform (uv); None for local (the base's pip) and conda."""
    conda: PreparedCondaEnvironment | None = None
    """The conda env manager's environment, solved, locked and fetched on the host: the
    conda lock and packages, the pip section's lock and wheelhouse (``kiln.env.conda``)."""
    notes: tuple[str, ...] = ()
    """Decisions worth telling the user, e.g. 'mlflow==3.17.2 -> mlflow-skinny==3.17.2'."""
    accelerator: Accelerator = "cpu"
    """Whose variants of accelerated packages the lock holds (``kiln.env.accelerators``)."""
    kiln_wheel_digest: str | None = None
    """``sha256:<hex>`` of ``kiln_wheel``: pins it like the lock pins everything else
    (e.g. ``echo "<hex>  kiln-<version>-py3-none-any.whl" | sha256sum -c`` before installing it)."""
