"""Where a built OCI image goes: one Publisher per target and a tee for several (as ko's publish package).

Targets, as ``--output`` and ``--push`` name them:

- ``oci:DIR[:TAG]``: an OCI image layout (``OciLayout``);
- ``docker-archive:FILE``: a tar for ``docker load`` (``DockerArchive``);
- ``docker``: loaded into the running Docker engine (``DockerLoad``);
- ``REGISTRY/REPO:TAG`` (``--push``): a registry (``Registry``).

Local targets need every base layer on disk; ``LocalLayers`` wraps them and downloads a registry
base's layers once, before the first of them writes.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from kiln.backends.base import Published
from kiln.backends.docker.cli import engine_cli
from kiln.errors import BuildError, DockerUnavailableError, UsageError
from kiln.oci.archive import repo_tag, save_archive, write_archive
from kiln.oci.blobstore import BlobStore
from kiln.oci.layout import write_layout
from kiln.oci.reference import parse_reference
from kiln.oci.registry import push_image
from kiln.oci.sources import BaseImage, fetch_layers
from kiln.oci.transports import Location, new_location
from kiln.oci.types import Image
from kiln.progress import Progress

log = logging.getLogger(__name__)

OUTPUT_FORMS = "oci:DIR[:TAG], docker-archive:FILE or docker"


@dataclass(frozen=True)
class Built:
    """What a publisher receives: the image, the base it was built on, its name and layer times."""

    image: Image
    base: BaseImage
    tag: str
    """``-n``: the image's name and tag."""
    epoch: int


class Publisher(Protocol):
    """Puts a built image somewhere."""

    def publish(self, built: Built, progress: Progress) -> tuple[Published, ...]:
        """Write or send ``built``; BuildError, RegistryError or DockerUnavailableError on failure."""
        ...


@dataclass(frozen=True)
class OciLayout:
    location: Location

    def publish(self, built: Built, progress: Progress) -> tuple[Published, ...]:
        ref = self.location.ref or repo_tag(built.tag).rsplit(":", 1)[1]
        progress.step(f"output: {self.location}")
        write_layout(
            built.image,
            self.location.path,
            ref_name=ref,
            image_name=repo_tag(built.tag),
            platform=built.base.platform,
        )
        return (Published(f"oci:{self.location.path}:{ref}"),)


@dataclass(frozen=True)
class DockerArchive:
    location: Location

    def publish(self, built: Built, progress: Progress) -> tuple[Published, ...]:
        progress.step(f"output: {self.location}")
        save_archive(
            built.image, self.location.path, tag=built.tag, platform=built.base.platform, epoch=built.epoch
        )
        return (Published(f"docker-archive:{self.location.path}"),)


@dataclass(frozen=True)
class DockerLoad:
    environ: Mapping[str, str] | None = None

    def publish(self, built: Built, progress: Progress) -> tuple[Published, ...]:
        progress.step("output: docker")
        load_into_docker(
            built.image, tag=built.tag, platform=built.base.platform, epoch=built.epoch, environ=self.environ
        )
        return (Published("docker"),)


@dataclass(frozen=True)
class Registry:
    reference: str

    def publish(self, built: Built, progress: Progress) -> tuple[Published, ...]:
        progress.step(f"push: {self.reference}")
        report = push_image(built.image, self.reference, progress=progress)
        uploaded = tuple(b.digest for b in report.blobs if b.action in ("uploaded", "copied"))
        reused = tuple(b.digest for b in report.blobs if b.action in ("skipped", "mounted"))
        progress.detail(
            f"pushed {report.reference}: {len(uploaded)} blobs sent ({format_size(report.bytes_uploaded)}), "
            f"{len(reused)} already there or mounted, in {report.seconds:.1f}s"
        )
        published = Published(
            str(report.reference), True, uploaded, reused, report.bytes_uploaded, report.seconds
        )
        return (published,)


@dataclass(frozen=True)
class LocalLayers:
    """Wraps publishers that write every blob themselves: the base's layers are made local first."""

    inner: Publisher
    store: BlobStore

    def publish(self, built: Built, progress: Progress) -> tuple[Published, ...]:
        local = fetch_layers(built.base, self.store)
        if local is not built.base:
            layers = (*local.layers, *built.image.layers[len(built.base.layers) :])
            built = replace(built, image=replace(built.image, layers=layers), base=local)
        return self.inner.publish(built, progress)


@dataclass(frozen=True)
class Tee:
    """Several publishers, in order; the first failure stops the rest."""

    publishers: tuple[Publisher, ...] = field(default=())

    def publish(self, built: Built, progress: Progress) -> tuple[Published, ...]:
        results: list[Published] = []
        for publisher in self.publishers:
            results.extend(publisher.publish(built, progress))
        return tuple(results)


def parse_output(text: str, environ: Mapping[str, str] | None = None) -> Publisher:
    """The publisher for one ``--output``; UsageError naming the known forms for anything else."""
    if text == "docker":
        return DockerLoad(environ)
    location = new_location(text)
    if location is None:
        raise UsageError(f"--output {text!r} is not a known output (expected {OUTPUT_FORMS})")
    if location.transport == "docker-archive":
        return DockerArchive(location)
    return OciLayout(location)


def publisher_for(
    outputs: Sequence[str],
    push: Sequence[str],
    *,
    store: BlobStore,
    environ: Mapping[str, str] | None = None,
) -> Tee:
    """Every ``--output`` (local targets wrapped in ``LocalLayers``) then every ``--push``, checked
    before any work; with neither, ``docker`` when an engine answers, else UsageError (a daemonless
    build must be told where the image goes)."""
    local = [parse_output(text, environ) for text in outputs]
    for text in push:
        parse_reference(text)  # refused before any work
    remote = [Registry(text) for text in push]
    if not local and not remote:
        try:
            engine_cli(environ)
        except DockerUnavailableError as exc:
            raise UsageError(
                f"--backend oci needs --output or --push when no Docker engine answers ({exc.message})",
                hint=f"add --output {OUTPUT_FORMS.replace(' or ', ', ')}, or --push REGISTRY/REPO:TAG",
            ) from exc
        local = [DockerLoad(environ)]
    wrapped: list[Publisher] = [LocalLayers(Tee(tuple(local)), store)] if local else []
    return Tee((*wrapped, *remote))


def load_into_docker(
    image: Image,
    *,
    tag: str,
    platform: Mapping[str, str],
    epoch: int,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Stream the image as a docker-archive into ``docker load``; DockerUnavailableError without an engine."""
    try:
        cli = engine_cli(environ)
    except DockerUnavailableError as exc:
        raise DockerUnavailableError(
            f"--output docker: {exc.message}",
            hint="start a Docker engine, or write the image with --output oci:DIR or docker-archive:FILE",
        ) from exc
    with tempfile.TemporaryFile() as said:
        process = subprocess.Popen(
            [cli.binary, "load"], stdin=subprocess.PIPE, stdout=said, stderr=subprocess.STDOUT, env=cli.env()
        )
        assert process.stdin is not None
        try:
            with process.stdin:
                write_archive(image, process.stdin, tag=tag, platform=platform, epoch=epoch)
        except BrokenPipeError:
            pass  # docker load gave up; what it said tells why
        finally:
            returncode = process.wait()
        said.seek(0)
        output = said.read().decode("utf-8", "replace")
    if returncode != 0:
        raise BuildError(
            f"'docker load' of {repo_tag(tag)} failed (exit {returncode})", log_tail=output[-2000:]
        )
    log.debug("docker load: %s", output.strip())


def format_size(count: int) -> str:
    """``count`` bytes in B, kB, MB or GB (powers of 1000), for progress lines."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"
