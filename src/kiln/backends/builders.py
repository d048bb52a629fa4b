"""The builders by name (``--backend docker`` and ``--backend oci``), each made from the build's options.

Each backend refuses the options of the others here, before any work: ``--build-arg`` is for
Dockerfile builds; ``--output`` and ``--push`` are the oci backend's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kiln.backends.base import Builder
from kiln.backends.docker.builder import DockerBuilder
from kiln.backends.oci import OciBuilder, check_build_args, default_store_root, source_date_epoch
from kiln.backends.publish import publisher_for
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


@dataclass(frozen=True)
class NoOptions:
    """A build that uses none of them."""

    build_args: Mapping[str, str] = field(default_factory=dict)
    output: Sequence[str] = ()
    push: Sequence[str] = ()


def check_docker(options: BackendOptions) -> None:
    if options.output or options.push:
        raise UsageError(
            "--output and --push need --backend oci (got --backend docker)",
            hint="add --backend oci, or push the built image with 'docker push'",
        )


def make_docker(options: BackendOptions) -> Builder:
    check_docker(options)
    return DockerBuilder.connect(build_args=options.build_args)


def check_oci(options: BackendOptions) -> None:
    check_build_args(tuple(options.build_args.items()))
    source_date_epoch()
    store = BlobStore(default_store_root(os.environ))
    publisher_for(options.output, options.push, store=store)


def make_oci(options: BackendOptions) -> Builder:
    check_build_args(tuple(options.build_args.items()))
    store = BlobStore(default_store_root(os.environ))
    return OciBuilder(store=store, publisher=publisher_for(options.output, options.push, store=store))


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
