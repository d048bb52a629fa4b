"""The OCI backend (``--backend oci``): kiln writes the image itself, no daemon, same image bytes every time.

``probe`` opens the base (``docker-archive:``, ``oci:`` or a registry; see
``kiln.oci.sources``) and reads it without running it. ``build`` makes kiln's layers
on the host (``kiln.image.layers.build``), reusing every layer whose inputs are unchanged,
writes the config and manifest, then each ``--output`` (an OCI layout, a docker-archive,
or ``docker load`` into a running engine) and each ``--push``. Layer times are
``SOURCE_DATE_EPOCH`` (0 when unset), so the same inputs give the same image ID and
manifest digest on any machine and day.

Every image carries its SBOM (``kiln.image.supply``) in the last layer kiln adds, made once the
system-packages layer exists (its dpkg status is the image's); the SBOM and a provenance
statement are attached to the manifest as artifacts. ``build_platforms`` does all that for each
platform's request (each with its own lock, wheels, Debian packages and base manifest; nothing
is emulated) and publishes the image index of the results.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kiln import contract
from kiln.backends.base import BuildRequest, BuildStep, BuiltImage, PlatformBuilt
from kiln.backends.publish import Built, PlatformImage, Publisher, format_size, host_image, publisher_for
from kiln.env.cache import cache_root
from kiln.errors import BuildError, UsageError
from kiln.image.layers.build import (
    LayerJob,
    MadeLayer,
    assemble_image,
    environment_job,
    kiln_job,
    make_layer,
    model_jobs,
    system_job,
)
from kiln.image.layers.probe import probe_files
from kiln.image.probe import BaseImageInfo
from kiln.image.supply.attach import (
    STATUS,
    attachments,
    base_facts,
    carry,
    image_sbom,
    model_files,
    provenance,
)
from kiln.oci.blobstore import BlobStore
from kiln.oci.index import assemble_index, platform_text
from kiln.oci.peek import read_layer_file
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
        return self.build_platforms([request], progress)

    def build_platforms(self, requests: Sequence[BuildRequest], progress: Progress) -> BuiltImage:
        """One image per request (one platform each), published once: with several, as an image index."""
        started = time.monotonic()
        made = [self._make(request, progress) for request in requests]
        images = tuple(one for one, _ in made)
        index = None
        if len(images) > 1:
            index = assemble_index([(one.image, one.platform) for one in images])
            progress.detail(f"image index {index.digest} for {', '.join(_platforms(images))}")
        tag = requests[0].tag
        published = self.publisher.publish(Built(images, tag, self.epoch, index), progress)
        shown = _shown(Built(images, tag, self.epoch, index))
        return BuiltImage(
            tag=tag,
            image_id=shown.image.image_id,
            layers=tuple(blob.diff_id or "" for blob in shown.image.layers),
            steps=tuple(step for _, steps in made for step in steps),
            builder="oci",
            seconds=time.monotonic() - started,
            digest=index.digest if index is not None else images[0].image.digest,
            published=published,
            platforms=tuple(
                PlatformBuilt(
                    platform_text(one.platform),
                    one.image.image_id,
                    one.image.digest,
                    tuple(a.digest for a in one.referrers),
                )
                for one in images
            ),
            sbom=contract.SBOM_PATH,
        )

    def _make(self, request: BuildRequest, progress: Progress) -> tuple[PlatformImage, list[BuildStep]]:
        """The layers, SBOM, config and manifest of one platform's image, and its artifacts."""
        spec, env = request.spec, request.env
        base, info = self.base(spec.base_image, request.platform)
        jobs = self._jobs(request, base, info, progress)
        model = model_files(request.work / "oci-model", contract.MODEL_DIR) if spec.files.model else None
        system = self._layer(jobs[0], base, request, progress)
        status = read_layer_file(system.blob.path, STATUS) if system.blob.path is not None else None
        facts = base_facts(base)
        sbom = image_sbom(spec=spec, env=env, base=facts, status=status, model=model, epoch=self.epoch)
        jobs[-1] = carry(jobs[-1], sbom)  # the SBOM goes into the last layer kiln adds
        made = [system, *(self._layer(job, base, request, progress) for job in jobs[1:])]
        image = assemble_image(base, spec, made, store=self.store, epoch=self.epoch)
        progress.detail(f"image {image.image_id[:19]}, manifest {image.digest}; SBOM at {contract.SBOM_PATH}")
        statement = provenance(
            image, name=request.tag, env=env, base=facts, spec=spec, model=model, sbom=sbom,
            parameters=request.parameters, epoch=self.epoch,
        )  # fmt: skip
        referrers = attachments(
            image, sbom=sbom, statement_bytes=statement, store=self.store, epoch=self.epoch
        )
        steps = [BuildStep(f"layer: {m.job.name}", cached=m.reused) for m in made]
        return PlatformImage(image, base.platform, base, referrers), steps

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
            jobs += model_jobs(request.model_dir, spec.model_layout, copy=request.work / "oci-model")
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


def _shown(built: Built) -> PlatformImage:
    """The image a BuiltImage reports (its id, its layers): the host platform's, else the first."""
    try:
        return host_image(built)
    except BuildError:
        return built.images[0]


def _platforms(images: Sequence[PlatformImage]) -> list[str]:
    return [platform_text(one.platform) for one in images]


def _describe(layer: MadeLayer) -> str:
    size = format_size(layer.blob.descriptor.size)
    if layer.reused:
        how = "reused (unchanged inputs)"
    elif layer.written:
        how = "written"
    else:
        how = "rebuilt, same bytes as before"
    return f"{layer.job.name}: {how}, {size} {layer.blob.digest[:19]}"
