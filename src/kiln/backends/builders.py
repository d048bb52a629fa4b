"""The builders by name (``--backend docker`` and ``--backend oci``), each made from the build's options.

Each backend refuses the options it cannot use here, before any work: ``--build-arg`` is for
Dockerfile builds; several ``--platform``s need the oci backend (the engine would emulate the other
architectures). ``--output`` and ``--push`` work with both: the Docker backend's image is exported
with ``docker save`` and published by the same publishers (``docker/push.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kiln.backends.base import Builder
from kiln.backends.docker.builder import DockerBuilder
from kiln.backends.docker.push import PublishingDockerBuilder
from kiln.backends.oci import OciBuilder, check_build_args, default_store_root, source_date_epoch
from kiln.backends.publish import Publisher, publisher_for
from kiln.errors import UsageError
from kiln.oci.blobstore import BlobStore


class BackendOptions(Protocol):
    """The options only some backends take (``kiln.api.options.BuildOptions`` has them all)."""

    @property
    def build_args(self) -> Mapping[str, str]: ...

    @property
    def output(self) -> Sequence[str]: ...

    @property
    def push(self) -> Sequence[str]: ...

    @property
    def platform(self) -> str | None: ...


@dataclass(frozen=True)
class NoOptions:
    """A build that uses none of them."""

    build_args: Mapping[str, str] = field(default_factory=dict)
    output: Sequence[str] = ()
    push: Sequence[str] = ()
    platform: str | None = None


def _platforms(options: BackendOptions) -> tuple[str, ...]:
    return tuple(options.platform.split(",")) if options.platform else ()


def check_docker(options: BackendOptions) -> None:
    platforms = _platforms(options)
    if len(platforms) > 1:
        raise UsageError(
            f"--platform {options.platform} needs --backend oci: the Docker backend builds one platform "
            "(building the others in the engine would emulate them, instruction by instruction)",
            hint="add --backend oci (each platform's wheels and Debian packages are fetched for it, "
            "nothing is emulated), or build one platform at a time",
        )
    _docker_publisher(options)


def _docker_publisher(options: BackendOptions) -> Publisher | None:
    """What the Docker backend publishes its image to: None when it only builds into the engine."""
    outputs = [o for o in options.output if o != "docker"]  # the image is in the engine already
    if not outputs and not options.push:
        return None
    return publisher_for(outputs, options.push, store=BlobStore(default_store_root(os.environ)))


def make_docker(options: BackendOptions) -> Builder:
    check_docker(options)
    builder = DockerBuilder.connect(build_args=options.build_args)
    publisher = _docker_publisher(options)
    if publisher is None:
        return builder
    return PublishingDockerBuilder(builder, publisher, BlobStore(default_store_root(os.environ)))


def check_oci(options: BackendOptions) -> None:
    check_build_args(tuple(options.build_args.items()))
    source_date_epoch()
    store = BlobStore(default_store_root(os.environ))
    publisher_for(options.output, options.push, store=store, platforms=_platforms(options))


def make_oci(options: BackendOptions) -> Builder:
    check_build_args(tuple(options.build_args.items()))
    store = BlobStore(default_store_root(os.environ))
    publisher = publisher_for(options.output, options.push, store=store, platforms=_platforms(options))
    return OciBuilder(store=store, publisher=publisher)


@dataclass(frozen=True)
class Backend:
    """A backend: how to check a build's options without touching anything, and how to make its builder."""

    check: Callable[[BackendOptions], None]
    make: Callable[[BackendOptions], Builder]


BUILDERS: dict[str, Backend] = {
    "docker": Backend(check_docker, make_docker),
    "oci": Backend(check_oci, make_oci),
}
"""Builder implementations by name; ``make`` fails fast when the backend's engine is unreachable."""


def backend(name: str) -> Backend:
    try:
        return BUILDERS[name]
    except KeyError:
        raise UsageError(
            f"unknown backend {name!r} (expected one of {', '.join(sorted(BUILDERS))})"
        ) from None


def check_options(name: str, options: BackendOptions) -> None:
    """UsageError for options backend ``name`` does not take or cannot use, before any work."""
    backend(name).check(options)


def get_builder(name: str = "docker", options: BackendOptions | None = None) -> Builder:
    """The builder named ``name`` for ``options``; UsageError naming the known ones for anything else."""
    return backend(name).make(options or NoOptions())
