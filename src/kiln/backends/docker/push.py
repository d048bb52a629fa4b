"""``--push`` and ``--output`` for the Docker backend, and ``kiln push`` of an image in the engine:
``docker save`` the image, then kiln's own publishers (the registry client, the layout and archive
writers), the same code ``--backend oci`` publishes with.

Why not ``docker push``: one push path for both backends and for ``kiln push`` (the same
credentials lookup, ``KILN_INSECURE_REGISTRIES``, mounts, resumable chunks, the same report);
the layers are gzipped by kiln, deterministically, so the same image pushed twice (or from two
machines) has the same manifest digest, which ``docker push`` does not promise. The price is one
``docker save`` to a temporary file; the gzipped layers are cached by diff id, so a second push of
an image that shares layers compresses only the new ones.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

from kiln.backends.base import BuildRequest, BuiltImage, PlatformBuilt
from kiln.backends.docker.builder import DockerBuilder
from kiln.backends.docker.cli import DockerCli
from kiln.backends.docker.sbom import Supplied
from kiln.backends.publish import Built, PlatformImage, Publisher
from kiln.errors import BuildError
from kiln.image.probe import BaseImageInfo
from kiln.image.supply.attach import attachments, provenance
from kiln.oci.blobstore import BlobStore
from kiln.oci.index import platform_text
from kiln.oci.referrers import Artifact
from kiln.oci.sources.archive import image_of_archive
from kiln.progress import Progress

log = logging.getLogger(__name__)


def export_image(cli: DockerCli, name: str, store: BlobStore, progress: Progress) -> PlatformImage:
    """The engine's image ``name`` as an OCI image in kiln's blob store (``docker save``, then gzip)."""
    progress.detail(f"docker save {name}")
    with tempfile.TemporaryDirectory(prefix="kiln-save-") as tmp:
        archive = Path(tmp) / "image.tar"
        saved = cli.run(["save", "--output", str(archive), name], timeout=3600)
        if saved.returncode != 0:
            raise BuildError(
                f"'docker save {name}' failed (exit {saved.returncode}): {saved.stderr.strip()[-500:]}",
                hint="check the image exists: docker image inspect " + name,
            )
        image, platform = image_of_archive(archive, None, store)
    progress.detail(f"{name}: manifest {image.digest} ({len(image.layers)} layers, gzipped by kiln)")
    return PlatformImage(image, platform)


@dataclasses.dataclass
class PublishingDockerBuilder:
    """The Docker backend, then each ``--output`` and ``--push`` from ``docker save`` of its image."""

    inner: DockerBuilder
    publisher: Publisher
    store: BlobStore

    @property
    def buildkit(self) -> bool:
        return self.inner.buildkit

    def probe(self, image: str, *, platform: str | None = None) -> BaseImageInfo:
        return self.inner.probe(image, platform=platform)

    def build(self, request: BuildRequest, progress: Progress) -> BuiltImage:
        made = self.inner.build_supplied(request, progress)
        built = made.built
        progress.step(f"exporting {request.tag} from Docker")
        one = export_image(self.inner.cli, built.image_id, self.store, progress)
        one = dataclasses.replace(one, referrers=_referrers(one, made, request, self.store))
        published = self.publisher.publish(Built((one,), request.tag, 0), progress)
        attached = tuple(a.digest for a in one.referrers)
        platform = PlatformBuilt(platform_text(one.platform), one.image.image_id, one.image.digest, attached)
        return dataclasses.replace(built, digest=one.image.digest, published=published, platforms=(platform,))


def _referrers(
    one: PlatformImage, made: Supplied, request: BuildRequest, store: BlobStore
) -> tuple[Artifact, ...]:
    """The SBOM and provenance of the exported image, as artifacts that refer to its manifest (the
    manifest kiln wrote from ``docker save``: its digest is what the registry will hold)."""
    statement = provenance(
        one.image, name=request.tag, env=request.env, base=made.base, spec=request.spec, model=made.model,
        sbom=made.sbom, parameters=request.parameters, epoch=made.epoch,
    )  # fmt: skip
    return attachments(one.image, sbom=made.sbom, statement_bytes=statement, store=store, epoch=made.epoch)
