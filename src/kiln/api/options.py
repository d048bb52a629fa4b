"""The build options: one table that the Python API, ``kiln build``, ``kiln generate-dockerfile`` and the
docs read. Each field is one option with one name everywhere (``--env-manager``, ``env_manager``).

The CLI builds its options from the ``cli`` metadata of these fields (``kiln.cli.options``), so a new
option is written once, here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kiln import contract
from kiln.errors import UsageError
from kiln.image.system_packages import check_package_names
from kiln.oci.reference import parse_reference
from kiln.setting_kinds import BATCH_SIZE, MILLISECONDS

Backend = Literal["docker", "oci"]
BACKENDS: tuple[Backend, ...] = ("docker", "oci")
PathKind = Literal["file", "dir", "new-dir"]


@dataclass(frozen=True)
class Cli:
    """How an option appears on the command line."""

    flags: tuple[str, ...]
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    flag: bool = False
    """``--x`` sets True (``--x/--no-x`` when ``negation`` is set too)."""
    negation: str | None = None
    boolean_value: bool = False
    """``--x [true|false]``: a value that may be left out (meaning true), as MLflow's ``--install-java``."""
    multiple: bool = False
    pairs: bool = False
    """Repeated ``KEY=VALUE``, handed to the API as a mapping."""
    path: PathKind | None = None
    """``file``/``dir``: must exist; ``new-dir``: may exist, must not be a file."""
    required: bool = False
    show_default: bool = False


def option(default: Any, cli: Cli) -> Any:
    """A dataclass field with its CLI metadata; tuples stand in for lists so the options stay frozen."""
    return field(default=default, metadata={"cli": cli})


def pairs_option(cli: Cli) -> Any:
    """A ``KEY=VALUE`` option: a mapping, empty by default."""
    return field(default_factory=dict, metadata={"cli": cli})


@dataclass(frozen=True)
class RecipeOptions:
    """What goes into the image: the options ``build`` and ``generate_dockerfile`` share."""

    model_uri: str | Path | None = option(None, Cli(
        ("-m", "--model-uri"), metavar="MODEL_URI",
        help="The MLflow model to package: a local directory, file://, runs:/RUN/PATH, models:/NAME/VERSION, "
        "models:/NAME@ALIAS, mlflow-artifacts:/... Without it the image is model-agnostic: mount a model at "
        + contract.MODEL_DIR + ".",
    ))  # fmt: skip
    tracking_uri: str | None = option(None, Cli(
        ("--tracking-uri",), metavar="URI",
        help="MLflow tracking server for runs:/ and models:/ URIs [default: $MLFLOW_TRACKING_URI]. "
        "Credentials are used on this machine only, never put in the image.",
    ))  # fmt: skip
    registry_uri: str | None = option(None, Cli(
        ("--registry-uri",), metavar="URI",
        help="MLflow model registry, when it differs from the tracking server "
        "[default: $MLFLOW_REGISTRY_URI].",
    ))  # fmt: skip
    env_manager: contract.EnvManager = option(contract.DEFAULT_ENV_MANAGER, Cli(
        ("--env-manager",), choices=contract.ENV_MANAGERS, show_default=True,
        help="How the model's environment is made: an isolated venv (virtualenv, uv), the base image's own "
        "Python (local), or a conda environment (conda).",
    ))  # fmt: skip
    base_image: str | None = option(None, Cli(
        ("--base-image",), metavar="IMAGE",
        help="Base image [default: python:X.Y-slim for the model's Python X.Y].",
    ))  # fmt: skip
    install_java: bool = option(False, Cli(
        ("--install-java",), boolean_value=True, metavar="[true|false]",
        help="Install a Java runtime (Debian's default-jre-headless). Without it, no JDK/JRE.",
    ))  # fmt: skip
    keep_package_tests: bool = option(False, Cli(
        ("--keep-package-tests",), flag=True,
        help="Keep the test suites that packages ship (tests/ in site-packages; about 100 MB for "
        "scikit-learn, scipy, numpy and pandas). kiln drops them by default.",
    ))  # fmt: skip
    keep_debug_info: bool = option(False, Cli(
        ("--keep-debug-info",), flag=True,
        help="Keep the debug sections of the packages' shared libraries (uvloop's alone is 12 MB of "
        "them; for gdb or crash reports with source lines). kiln strips them by default.",
    ))  # fmt: skip
    install_mlflow: bool = option(False, Cli(
        ("--install-mlflow",), flag=True,
        help="Install MLflow even if the model's requirements do not name it.",
    ))  # fmt: skip
    mlflow_home: str | Path | None = option(None, Cli(
        ("--mlflow-home",), path="dir", metavar="PATH",
        help="Install MLflow from this local checkout instead of from the index.",
    ))  # fmt: skip
    requirements: tuple[str | Path, ...] = option((), Cli(
        ("--requirements",), multiple=True, path="file", metavar="FILE",
        help="Extra requirements file (repeatable); for a model-agnostic image, its environment.",
    ))  # fmt: skip
    env_from: str | Path | None = option(None, Cli(
        ("--env-from",), metavar="MODEL_URI",
        help="Model-agnostic image: use the environment of this model (a directory or any -m URI).",
    ))  # fmt: skip
    platform: str | None = option(None, Cli(
        ("--platform",), metavar="OS/ARCH[,OS/ARCH...]",
        help="Target platform, e.g. linux/amd64 [default: the base image's]. Several, comma-separated "
        "(linux/amd64,linux/arm64; --backend oci): one image per platform, each with its own lock, "
        "wheels and Debian packages, under one image index; nothing is emulated.",
    ))  # fmt: skip
    labels: Mapping[str, str] = pairs_option(
        Cli(("--label",), pairs=True, metavar="KEY=VALUE", help="Add an image label.")
    )
    system_packages: tuple[str, ...] = option((), Cli(
        ("--system-package",), multiple=True, metavar="NAME",
        help="A Debian package to add from the base image's own apt sources (repeatable), e.g. libgomp1. "
        "Packages for shared libraries the wheels need and the base lacks are added without asking.",
    ))  # fmt: skip
    accelerator: Literal["auto", "cpu", "cuda"] = option("auto", Cli(
        ("--accelerator",), choices=("auto", "cpu", "cuda"), show_default=True,
        help="The hardware the image serves on: cpu (CPU builds of packages that have one, e.g. "
        "xgboost-cpu, torch==X+cpu), cuda (their CUDA builds), or auto: cuda when the model's "
        "requirements name a CUDA build, else cpu.",
    ))  # fmt: skip
    max_batch_size: int = option(contract.DEFAULT_MAX_BATCH_SIZE, Cli(
        ("--max-batch-size",), metavar="N", show_default=True,
        help="KILN_MAX_BATCH_SIZE for the image: adaptive micro-batching of /invocations requests, at most "
        "N per predict call (1: off; only for models that predict row by row; docs/scoring.md); "
        "docker run -e overrides it.",
    ))  # fmt: skip
    max_batch_delay: float = option(contract.DEFAULT_MAX_BATCH_DELAY, Cli(
        ("--max-batch-delay",), metavar="MS", show_default=True,
        help="KILN_MAX_BATCH_DELAY for the image: milliseconds a request that finds its worker busy may "
        "wait for more to join its batch.",
    ))  # fmt: skip

    def __post_init__(self) -> None:
        # The runtime's own parsing (strings from the CLI, numbers from the API): the same checks.
        object.__setattr__(
            self, "max_batch_size", BATCH_SIZE.parse("--max-batch-size", str(self.max_batch_size))
        )
        object.__setattr__(
            self, "max_batch_delay", MILLISECONDS.parse("--max-batch-delay", str(self.max_batch_delay))
        )
        if self.env_manager not in contract.ENV_MANAGERS:
            choices = ", ".join(contract.ENV_MANAGERS)
            raise UsageError(f"unknown env manager {self.env_manager!r} (expected one of {choices})")
        # Sequences and mappings given by API callers are frozen here, once.
        object.__setattr__(self, "requirements", tuple(self.requirements))
        object.__setattr__(self, "labels", dict(self.labels))
        object.__setattr__(self, "system_packages", check_package_names(self.system_packages))
        if self.accelerator not in ("auto", "cpu", "cuda"):
            raise UsageError(f"unknown accelerator {self.accelerator!r} (expected one of auto, cpu, cuda)")
        if self.platform is not None:
            object.__setattr__(self, "platform", ",".join(parse_platforms(self.platform)))

    @property
    def platforms(self) -> tuple[str | None, ...]:
        """Each platform to build for; ``(None,)`` for the base image's own."""
        return tuple(self.platform.split(",")) if self.platform else (None,)


@dataclass(frozen=True)
class BuildOptions(RecipeOptions):
    """Everything ``kiln build`` / ``kiln.build`` takes; ``name`` is required."""

    name: str = option("", Cli(
        ("-n", "--name"), metavar="NAME[:TAG]", required=True, help="The image's name and tag.",
    ))  # fmt: skip
    no_cache: bool = option(False, Cli(("--no-cache",), flag=True, help="Build every layer afresh."))
    build_args: Mapping[str, str] = pairs_option(
        Cli(("--build-arg",), pairs=True, metavar="KEY=VALUE", help="A docker build argument.")
    )
    load_check: bool = option(True, Cli(
        ("--load-check",), flag=True, negation="--no-load-check",
        help="After the build, load the model in the image (its own Python, no network) so that a "
        "model that cannot load fails the build, not the deployment [default: on; needs the image in "
        "Docker: always with --backend docker, with --output docker for oci].",
    ))  # fmt: skip
    smoke_test: bool = option(False, Cli(
        ("--smoke-test",), flag=True,
        help="Start the built image, wait for /ping, score the model's saved input example, remove it.",
    ))  # fmt: skip
    backend: Backend = option("docker", Cli(
        ("--backend",), choices=BACKENDS, show_default=True,
        help="Who builds: the Docker engine from a Dockerfile (docker), or kiln itself, without a daemon, "
        "reproducibly (oci).",
    ))  # fmt: skip
    output: tuple[str, ...] = option((), Cli(
        ("--output",), multiple=True, metavar="TARGET",
        help="--backend oci: write the image to oci:DIR[:TAG] (an OCI layout), docker-archive:FILE (for "
        "'docker load') or docker (load it into the running engine; the default). Repeatable.",
    ))  # fmt: skip
    push: tuple[str, ...] = option((), Cli(
        ("--push",), multiple=True, metavar="REGISTRY/REPO:TAG",
        help="--backend oci: push the image to this registry reference (Docker's credentials). Repeatable.",
    ))  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name(self.name)
        if self.backend not in BACKENDS:
            raise UsageError(f"unknown backend {self.backend!r} (expected one of {', '.join(BACKENDS)})")
        object.__setattr__(self, "build_args", dict(self.build_args))
        object.__setattr__(self, "output", tuple(self.output))
        object.__setattr__(self, "push", tuple(self.push))


@dataclass(frozen=True)
class GenerateOptions(RecipeOptions):
    """Everything ``kiln generate-dockerfile`` / ``kiln.generate_dockerfile`` takes."""

    output_directory: str | Path = option("mlflow-dockerfile", Cli(
        ("-d", "--output-directory"), path="new-dir", show_default=True,
        help="Where to write the Dockerfile and its build context.",
    ))  # fmt: skip
    buildkit: bool = option(False, Cli(
        ("--buildkit",), flag=True, negation="--no-buildkit",
        help="Use BuildKit-only syntax (cache and bind mounts) [default: no, any builder builds it].",
    ))  # fmt: skip


def parse_platforms(text: str) -> tuple[str, ...]:
    """``linux/amd64,linux/arm64`` as its platforms; UsageError for a malformed or repeated one."""
    found: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        pieces = part.split("/")
        if len(pieces) not in (2, 3) or not all(pieces):
            raise UsageError(
                f"--platform {text!r}: {part!r} is not OS/ARCH[/VARIANT] (expected e.g. linux/amd64, or "
                "several comma-separated: linux/amd64,linux/arm64)"
            )
        if part in found:
            raise UsageError(f"--platform {text!r} names {part} twice")
        found.append(part)
    return tuple(found)


RECORDED = (
    "name", "backend", "env_manager", "base_image", "install_java", "keep_package_tests", "keep_debug_info",
    "install_mlflow", "accelerator", "labels",
)  # fmt: skip
"""The options a build's provenance records (host paths and tracking servers stay out)."""


def runtime_environment(options: RecipeOptions) -> tuple[tuple[str, str], ...]:
    """The runtime settings a build bakes into the image's environment: those changed from their default."""
    baked: list[tuple[str, str]] = []
    if options.max_batch_size != contract.DEFAULT_MAX_BATCH_SIZE:
        baked.append((contract.ENV_MAX_BATCH_SIZE[0], str(options.max_batch_size)))
    if options.max_batch_size > 1 or options.max_batch_delay != contract.DEFAULT_MAX_BATCH_DELAY:
        baked.append((contract.ENV_MAX_BATCH_DELAY[0], MILLISECONDS.format(options.max_batch_delay)))
    return tuple(baked)


def runtime_labels(options: RecipeOptions) -> tuple[tuple[str, str], ...]:
    """The same settings as image labels (``io.kiln.max-batch-size``, ...) that ``docker inspect`` shows."""
    labels = {contract.ENV_MAX_BATCH_SIZE[0]: contract.LABEL_MAX_BATCH_SIZE}
    labels[contract.ENV_MAX_BATCH_DELAY[0]] = contract.LABEL_MAX_BATCH_DELAY
    return tuple((labels[name], value) for name, value in runtime_environment(options))


def recorded_options(options: BuildOptions) -> dict[str, Any]:
    """``RECORDED``'s values, JSON-ready, for the image's provenance statement."""
    return {name: getattr(options, name) for name in RECORDED}


def check_name(name: str) -> None:
    """UsageError unless ``name`` is an image reference ``docker build -t`` takes (no digest)."""
    try:
        parse_reference(name)
    except UsageError as exc:
        bad = exc.message
    else:
        bad = "" if "@" not in name else "a digest cannot name an image being built"
    if bad or not name:
        raise UsageError(
            f"image name {name!r} is not a valid Docker reference (expected e.g. 'my-model' or "
            "'registry.example.com/team/my-model:1.0', lower case)",
            hint=bad or None,
        )


@dataclass(frozen=True)
class OptionField:
    """One row of the table: the field's name, its default and how the CLI shows it."""

    name: str
    default: Any
    cli: Cli


def option_fields(options: type[RecipeOptions]) -> tuple[OptionField, ...]:
    """The rows of ``options`` (``BuildOptions`` or ``GenerateOptions``), in table order."""
    return tuple(
        OptionField(f.name, None if f.default is dataclasses.MISSING else f.default, f.metadata["cli"])
        for f in dataclasses.fields(options)
        if "cli" in f.metadata
    )
