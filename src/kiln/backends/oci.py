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
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kiln.backends.base import BuildRequest, BuildStep, BuiltImage
from kiln.backends.publish import Built, Publisher, format_size, publisher_for
from kiln.env.cache import cache_root
from kiln.errors import BuildError, UsageError
from kiln.image.layers.build import (
    LayerJob,
    MadeLayer,
    assemble_image,
    environment_job,
    kiln_job,
    make_layer,
    model_job,
    system_job,
)
from kiln.image.layers.probe import probe_files
from kiln.image.model_files import copy_model
from kiln.image.probe import BaseImageInfo
from kiln.oci.blobstore import BlobStore
from kiln.oci.sources import BaseImage, open_base
from kiln.progress import Progress

log = logging.getLogger(__name__)

ENV_OCI_CACHE = "KILN_OCI_CACHE"
"""Overrides the blob store's root (default ``oci/`` in kiln's cache)."""


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

    def __init__(
        self,
        store: BlobStore | None = None,
        environ: Mapping[str, str] | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.epoch = source_date_epoch(self.environ)
        self.store = store or BlobStore(default_store_root(self.environ))
        self.publisher = publisher or publisher_for((), (), store=self.store, environ=self.environ)
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
        started = time.monotonic()
        spec = request.spec
        base, info = self.base(spec.base_image, request.platform)
        jobs = self._jobs(request, base, info, progress)
        made = [self._layer(job, base, request, progress) for job in jobs]
        image = assemble_image(base, spec, made, store=self.store, epoch=self.epoch)
        progress.detail(f"image {image.image_id[:19]}, manifest {image.digest}")
        published = self.publisher.publish(Built(image, base, request.tag, self.epoch), progress)
        return BuiltImage(
            tag=request.tag,
            image_id=image.image_id,
            layers=tuple(blob.diff_id or "" for blob in image.layers),
            steps=tuple(BuildStep(f"layer: {m.job.name}", cached=m.reused) for m in made),
            builder="oci",
            seconds=time.monotonic() - started,
            digest=image.digest,
            published=published,
        )

    def _jobs(
        self, request: BuildRequest, base: BaseImage, info: BaseImageInfo, progress: Progress
    ) -> list[LayerJob]:
        spec, env = request.spec, request.env
        if spec.files.python and request.python_dir is None:
            raise ValueError("spec bundles a Python but the request has no python_dir")
        jobs = [
            system_job(spec, base, say=progress.detail),
            environment_job(
                spec,
                env,
                base,
                base_python_version=info.python_version or spec.python_version,
                python_dir=request.python_dir if spec.files.python else None,
            ),
            kiln_job(spec, env, base),
        ]
        if spec.files.model:
            if request.model_dir is None:
                raise ValueError("spec has a model but the request has no model_dir")
            # The same checked, mode-normalised copy the Docker backend's context holds.
            copy = request.work / "oci-model"
            copy_model(request.model_dir, copy)
            jobs.append(model_job(copy))
        return jobs

    def _layer(self, job: LayerJob, base: BaseImage, request: BuildRequest, progress: Progress) -> MadeLayer:
        progress.step(f"layer: {job.name}")
        layer = make_layer(
            job,
            store=self.store,
            base=base,
            epoch=self.epoch,
            work=request.work / "oci-layers",
            use_cache=not request.no_cache,
        )
        progress.detail(_describe(layer))
        return layer


def _describe(layer: MadeLayer) -> str:
    size = format_size(layer.blob.descriptor.size)
    if layer.reused:
        how = "reused (unchanged inputs)"
    elif layer.written:
        how = "written"
    else:
        how = "rebuilt, same bytes as before"
    return f"{layer.job.name}: {how}, {size} {layer.blob.digest[:19]}"
