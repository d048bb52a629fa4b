"""The OCI backend (``--backend oci``): kiln writes the image itself, no daemon, same image bytes every time.

``probe`` opens the base (``docker-archive:``, ``oci:`` or a registry; see
``kiln.oci.sources``) and reads it without running it. ``build`` makes kiln's layers
on the host (``kiln.image.layers.build``), reusing every layer whose inputs are unchanged,
writes the config and manifest, then each ``--output`` (an OCI layout, a docker-archive,
or ``docker load`` into a running engine) and each ``--push``. Layer times are
``SOURCE_DATE_EPOCH`` (0 when unset), so the same inputs give the same image ID and
manifest digest on any machine and day.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from kiln.backends.base import BuildRequest, BuildStep, BuiltImage, PushedImage
from kiln.env.cache import cache_root
from kiln.errors import BuildError, DockerUnavailableError, UsageError
from kiln.image.layers.build import (
    MadeLayer,
    assemble_image,
    environment_job,
    kiln_job,
    make_layer,
    model_job,
    system_job,
)
from kiln.image.layers.probe import probe_files
from kiln.image.probe import BaseImageInfo
from kiln.oci.archive import repo_tag, save_archive, write_archive
from kiln.oci.blobstore import BlobStore
from kiln.oci.layout import write_layout
from kiln.oci.sources import BaseImage, fetch_layers, open_base
from kiln.oci.types import Image
from kiln.progress import Progress

log = logging.getLogger(__name__)

ENV_OCI_CACHE = "KILN_OCI_CACHE"
"""Overrides the blob store's root (default ``oci/`` in kiln's cache)."""

OutputKind = Literal["oci", "docker-archive", "docker"]
OUTPUT_FORMS = "oci:DIR[:TAG], docker-archive:FILE or docker"


@dataclass(frozen=True)
class Output:
    """Where ``--output`` writes the image."""

    kind: OutputKind
    path: Path | None = None
    ref: str | None = None
    """``oci:DIR:TAG``'s TAG (default: the tag of ``-n``)."""

    def __str__(self) -> str:
        if self.kind == "docker":
            return "docker"
        return f"{self.kind}:{self.path}" + (f":{self.ref}" if self.ref else "")


def parse_output(text: str) -> Output:
    """``oci:DIR[:TAG]``, ``docker-archive:FILE`` or ``docker``; UsageError for anything else."""
    kind, sep, rest = text.partition(":")
    if text == "docker":
        return Output("docker")
    if sep and rest and kind == "docker-archive":
        return Output("docker-archive", Path(rest).expanduser().absolute())
    if sep and rest and kind == "oci":
        directory, colon, ref = rest.rpartition(":")
        if colon and ref and "/" not in ref and not Path(rest).exists():
            return Output("oci", Path(directory).expanduser().absolute(), ref)
        return Output("oci", Path(rest).expanduser().absolute())
    raise UsageError(f"--output {text!r} is not a known output (expected {OUTPUT_FORMS})")


def check_targets(
    outputs: Sequence[str], push: Sequence[str], environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """Validate ``--output``/``--push`` (and SOURCE_DATE_EPOCH) before any work; with neither target,
    ``docker`` when an engine answers, else UsageError (a daemonless build must be told where the
    image goes)."""
    from kiln.oci.registry import parse_reference

    source_date_epoch(environ)

    for text in outputs:
        parse_output(text)
    for text in push:
        parse_reference(text)
    if outputs or push:
        return tuple(outputs)
    from kiln.backends.docker.cli import find_docker

    try:
        find_docker(environ)
    except DockerUnavailableError as exc:
        raise UsageError(
            f"--backend oci needs --output or --push when no Docker engine answers ({exc.message})",
            hint=f"add --output {OUTPUT_FORMS.replace(' or ', ', ')}, or --push REGISTRY/REPO:TAG",
        ) from exc
    return ("docker",)


def default_store_root(environ: Mapping[str, str]) -> Path:
    """``$KILN_OCI_CACHE``, else ``oci/`` in kiln's cache (``kiln.env.cache.cache_root``)."""
    explicit = environ.get(ENV_OCI_CACHE)
    if explicit:
        return Path(explicit).expanduser()
    return cache_root() / "oci"


def check_build_args(build_args: Sequence[tuple[str, str]]) -> None:
    if build_args:
        names = ", ".join(key for key, _ in build_args)
        raise UsageError(
            f"--build-arg ({names}) applies to Dockerfile builds; --backend oci runs no Dockerfile",
            hint="drop --build-arg, or build with --backend docker",
        )


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int:
    """``SOURCE_DATE_EPOCH`` as whole seconds (0 when unset); UsageError for anything else."""
    value = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds since 1970-01-01")
    return int(value)


class OciBuilder:
    """Assembles images in Python: layers, config, manifest; then outputs and pushes."""

    buildkit = False
    """The context's Dockerfile is not what gets built; its syntax does not matter here."""

    def __init__(self, store: BlobStore | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.store = store or BlobStore(default_store_root(self.environ))
        self._bases: dict[tuple[str, str | None], tuple[BaseImage, BaseImageInfo]] = {}

    def base(self, image: str, platform: str | None = None) -> tuple[BaseImage, BaseImageInfo]:
        """The base named ``image`` (any transport), opened and probed once per builder."""
        key = (image, platform)
        if key not in self._bases:
            base = open_base(image, platform=platform, store=self.store)
            info = probe_files(
                image, image_id=base.config_digest, os_arch=base.os_arch, config=base.config, files=base.files
            )
            if info.python is None and not info.has_apt and info.glibc is None:
                raise BuildError(
                    f"base image {image!r} has no Python, no apt-get and no glibc that kiln can find "
                    "(expected a Debian/Ubuntu-like image, e.g. python:3.11-slim)"
                )
            self._bases[key] = (base, info)
        return self._bases[key]

    def probe(self, image: str, *, platform: str | None = None) -> BaseImageInfo:
        return self.base(image, platform)[1]

    def build(self, request: BuildRequest, progress: Progress) -> BuiltImage:
        if request.spec is None or request.env is None:
            raise ValueError("the oci builder needs the request's spec and env")
        check_build_args(request.build_args)
        started = time.monotonic()
        epoch = source_date_epoch(self.environ)
        spec, env = request.spec, request.env
        outputs = [parse_output(text) for text in check_targets(request.outputs, request.push, self.environ)]
        base, info = self.base(spec.base_image, request.platform)
        context, work = request.context, request.context.parent / "oci-layers"
        python_dir = context / spec.files.python if spec.files.python else None
        jobs = [
            system_job(spec, base, say=progress.detail),
            environment_job(
                spec,
                env,
                base,
                base_python_version=info.python_version or spec.python_version,
                python_dir=python_dir,
            ),
            kiln_job(spec, env, base),
        ]
        if spec.files.model:
            jobs.append(model_job(context / spec.files.model))
        made: list[MadeLayer] = []
        for job in jobs:
            progress.step(f"layer: {job.name}")
            layer = make_layer(
                job, store=self.store, base=base, epoch=epoch, work=work, use_cache=not request.no_cache
            )
            progress.detail(_describe(layer))
            made.append(layer)
        image = assemble_image(base, spec, made, store=self.store, epoch=epoch)
        progress.detail(f"image {image.image_id[:19]}, manifest {image.digest}")
        written = self._write_outputs(image, base, outputs, request.tag, epoch, progress)
        pushed = tuple(self._push(image, reference, progress) for reference in request.push)
        return BuiltImage(
            tag=request.tag,
            image_id=image.image_id,
            layers=tuple(blob.diff_id or "" for blob in image.layers),
            steps=tuple(BuildStep(f"layer: {m.job.name}", cached=m.reused) for m in made),
            builder="oci",
            seconds=time.monotonic() - started,
            digest=image.digest,
            outputs=written,
            pushed=pushed,
        )

    def _write_outputs(
        self,
        image: Image,
        base: BaseImage,
        outputs: Sequence[Output],
        tag: str,
        epoch: int,
        progress: Progress,
    ) -> tuple[str, ...]:
        if not outputs:
            return ()
        local = fetch_layers(base, self.store)
        if local is not base:
            image = replace(image, layers=(*local.layers, *image.layers[len(base.layers) :]))
        written: list[str] = []
        for output in outputs:
            progress.step(f"output: {output}")
            if output.kind == "oci":
                assert output.path is not None
                ref = output.ref or repo_tag(tag).rsplit(":", 1)[1]
                write_layout(
                    image, output.path, ref_name=ref, image_name=repo_tag(tag), platform=base.platform
                )
                written.append(f"oci:{output.path}:{ref}")
            elif output.kind == "docker-archive":
                assert output.path is not None
                save_archive(image, output.path, tag=tag, platform=base.platform, epoch=epoch)
                written.append(f"docker-archive:{output.path}")
            else:
                load_into_docker(image, tag=tag, platform=base.platform, epoch=epoch, environ=self.environ)
                written.append("docker")
        return tuple(written)

    def _push(self, image: Image, reference: str, progress: Progress) -> PushedImage:
        from kiln.oci.registry import push_image

        progress.step(f"push: {reference}")
        report = push_image(image, reference, progress=progress)
        uploaded = tuple(b.digest for b in report.blobs if b.action in ("uploaded", "copied"))
        reused = tuple(b.digest for b in report.blobs if b.action in ("skipped", "mounted"))
        progress.detail(
            f"pushed {report.reference}: {len(uploaded)} blobs sent ({_size(report.bytes_uploaded)}), "
            f"{len(reused)} already there or mounted, in {report.seconds:.1f}s"
        )
        return PushedImage(str(report.reference), uploaded, reused, report.bytes_uploaded, report.seconds)


def load_into_docker(
    image: Image,
    *,
    tag: str,
    platform: Mapping[str, str],
    epoch: int,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Stream the image as a docker-archive into ``docker load``; DockerUnavailableError without an engine."""
    from kiln.backends.docker.cli import find_docker

    try:
        cli = find_docker(environ)
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


def _describe(layer: MadeLayer) -> str:
    size = _size(layer.blob.descriptor.size)
    if layer.reused:
        how = "reused (unchanged inputs)"
    elif layer.written:
        how = "written"
    else:
        how = "rebuilt, same bytes as before"
    return f"{layer.job.name}: {how}, {size} {layer.blob.digest[:19]}"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"
