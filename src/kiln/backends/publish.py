"""Where a built OCI image goes: one Publisher per target and a tee for several (as ko's publish package).

Targets, as ``--output`` and ``--push`` name them:

- ``oci:DIR[:TAG]``: an OCI image layout (``OciLayout``);
- ``docker-archive:FILE``: a tar for ``docker load`` (``DockerArchive``);
- ``docker``: loaded into the running Docker engine (``DockerLoad``);
- ``REGISTRY/REPO:TAG`` (``--push``): a registry (``Registry``).

Local targets need every base layer on disk; ``LocalLayers`` wraps them and downloads a registry
base's layers once, before the first of them writes.

A multi-platform build hands over several images and their image index: the layout holds the
index (named ``TAG``) and every platform image; a registry gets every manifest, then the index by
tag; ``docker`` loads the host's platform only (the engine's image store holds one platform per
tag); ``docker-archive:FILE`` holds one image, so it needs ``{platform}`` in FILE (one archive per
platform, ``linux-arm64``) and is refused before any work without it. Each image's artifacts (its
SBOM and provenance) go wherever a registry or a layout can keep them.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from kiln.backends.base import Published
from kiln.backends.docker.cli import engine_cli
from kiln.errors import BuildError, DockerUnavailableError, UsageError
from kiln.oci.archive import repo_tag, save_archive, write_archive
from kiln.oci.blobstore import BlobStore
from kiln.oci.index import ImageIndex, platform_text
from kiln.oci.layout import write_index_layout, write_layout
from kiln.oci.reference import parse_reference
from kiln.oci.referrers import Artifact
from kiln.oci.registry import PushReport, push_image, push_index
from kiln.oci.sources import BaseImage, fetch_layers, host_os_arch
from kiln.oci.transports import Location, new_location
from kiln.oci.types import Image
from kiln.progress import Progress

log = logging.getLogger(__name__)

OUTPUT_FORMS = "oci:DIR[:TAG], docker-archive:FILE or docker"
PLATFORM_PLACEHOLDER = "{platform}"
"""In ``docker-archive:FILE`` of a multi-platform build: one archive per platform (``linux-arm64``)."""


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image, the base it was built on, and the artifacts that refer to it."""

    image: Image
    platform: Mapping[str, str]
    base: BaseImage | None = None
    """None for an image exported from Docker or read from a layout (every blob is local)."""
    referrers: tuple[Artifact, ...] = ()


@dataclass(frozen=True)
class Built:
    """What a publisher receives: the image of each platform (and their index when there are several),
    the name and the layer times."""

    images: tuple[PlatformImage, ...]
    tag: str
    """``-n``: the image's name and tag."""
    epoch: int
    index: ImageIndex | None = None
    """Set for a multi-platform build: the index naming every image of ``images``."""

    @property
    def image(self) -> Image:
        """The image of a single-platform build (the first platform's)."""
        return self.images[0].image

    @property
    def referrers(self) -> tuple[Artifact, ...]:
        return tuple(item for one in self.images for item in one.referrers)


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
        path, name = self.location.path, repo_tag(built.tag)
        if built.index is not None:
            write_index_layout(built.index, path, ref_name=ref, image_name=name, referrers=built.referrers)
        else:
            write_layout(
                built.image, path, ref_name=ref, image_name=name, platform=built.images[0].platform,
                referrers=built.referrers,
            )  # fmt: skip
        return (Published(f"oci:{path}:{ref}"),)


@dataclass(frozen=True)
class DockerArchive:
    location: Location

    def publish(self, built: Built, progress: Progress) -> tuple[Published, ...]:
        results = []
        for one in built.images:
            path = archive_path(self.location.path, one.platform)
            progress.step(f"output: docker-archive:{path}")
            save_archive(one.image, path, tag=built.tag, platform=one.platform, epoch=built.epoch)
            results.append(Published(f"docker-archive:{path}"))
        return tuple(results)


@dataclass(frozen=True)
class DockerLoad:
    environ: Mapping[str, str] | None = None

    def publish(self, built: Built, progress: Progress) -> tuple[Published, ...]:
        progress.step("output: docker")
        one = host_image(built)
        if len(built.images) > 1:
            progress.detail(
                f"loading {platform_text(one.platform)} only, the host's platform (Docker's image store "
                "holds one platform per tag); the other platforms are in the other outputs"
            )
        load_into_docker(
            one.image, tag=built.tag, platform=one.platform, epoch=built.epoch, environ=self.environ
        )
        return (Published("docker"),)


@dataclass(frozen=True)
class Registry:
    reference: str

    def publish(self, built: Built, progress: Progress) -> tuple[Published, ...]:
        progress.step(f"push: {self.reference}")
        report: PushReport
        if built.index is not None:
            report = push_index(built.index, self.reference, progress=progress, referrers=built.referrers)
        else:
            report = push_image(built.image, self.reference, progress=progress, referrers=built.referrers)
        if report.artifacts:
            how = (
                "the referrers API" if report.referrers_api else "the sha256-<digest> tag (no referrers API)"
            )
            progress.detail(f"attached {len(report.artifacts)} artifacts (SBOM, provenance) through {how}")
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
        images = tuple(_local(one, self.store) for one in built.images)
        return self.inner.publish(replace(built, images=images), progress)


def _local(one: PlatformImage, store: BlobStore) -> PlatformImage:
    if one.base is None:
        return one
    local = fetch_layers(one.base, store)
    if local is one.base:
        return one
    layers = (*local.layers, *one.image.layers[len(one.base.layers) :])
    return replace(one, image=replace(one.image, layers=layers), base=local)


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
    platforms: Sequence[str] = (),
) -> Tee:
    """Every ``--output`` (local targets wrapped in ``LocalLayers``) then every ``--push``, checked
    before any work; with neither, ``docker`` when an engine answers, else UsageError (a daemonless
    build must be told where the image goes). ``platforms``: those of a multi-platform build."""
    local = [parse_output(text, environ) for text in outputs]
    if len(platforms) > 1:
        for publisher in local:
            check_platforms(publisher, platforms)
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


def check_platforms(publisher: Publisher, platforms: Sequence[str]) -> None:
    """UsageError, before any work, for an output that cannot take a build for several platforms."""
    listed = ", ".join(platforms)
    if isinstance(publisher, DockerArchive) and PLATFORM_PLACEHOLDER not in str(publisher.location.path):
        raise UsageError(
            f"--output {publisher.location} cannot hold a build for {listed}: a docker-archive holds "
            "one image per tag, and 'docker load' reads one platform",
            hint=f"write one archive per platform with {PLATFORM_PLACEHOLDER} in the file name (--output "
            f"docker-archive:image-{PLATFORM_PLACEHOLDER}.tar), or all of them with --output oci:DIR",
        )
    if isinstance(publisher, DockerLoad) and host_os_arch() not in platforms:
        raise UsageError(
            f"--output docker loads the host's platform ({host_os_arch()}) of a multi-platform build, "
            f"and {listed} does not include it",
            hint="add the host's platform to --platform, or write --output oci:DIR / --push REF",
        )


def host_image(built: Built) -> PlatformImage:
    """The image ``docker load`` gets: the only one, or the host's platform's."""
    if len(built.images) == 1:
        return built.images[0]
    host = host_os_arch()
    for one in built.images:
        if platform_text(one.platform) == host or platform_text(one.platform).startswith(host + "/"):
            return one
    raise BuildError(f"the build has no image for the host's platform {host} to load into Docker")


def archive_path(path: Path, platform: Mapping[str, str]) -> Path:
    """``path`` with ``{platform}`` replaced by ``linux-arm64`` (no placeholder: ``path``)."""
    return Path(str(path).replace(PLATFORM_PLACEHOLDER, platform_text(platform).replace("/", "-")))


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
