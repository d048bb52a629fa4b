"""The SBOM and provenance of one built platform image: made from what the build used, carried in the
image's last layer (the SBOM), and attached to the manifest as OCI artifacts (both).

``--backend oci`` calls these in order: ``image_sbom`` once the system-packages layer exists (its
dpkg status is the image's), ``carry`` to put the SBOM into the last layer kiln adds,
``provenance`` once the manifest exists, and ``attachments`` for the artifacts a push or a
layout gets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kiln.env.lockfile import parse_lock
from kiln.env.spec import EnvSpec
from kiln.image.layers.build import LayerJob
from kiln.image.spec import ImageSpec
from kiln.image.supply.provenance import (
    PREDICATE_ANNOTATION,
    PREDICATE_TYPE,
    Dependency,
    ProvenanceInputs,
    Signer,
    Unsigned,
    statement,
)
from kiln.image.supply.sbom import (
    MEDIA_CYCLONEDX,
    SBOM_PATH,
    ModelFile,
    SbomInputs,
    installed_packages,
    make_sbom,
    model_digest,
    os_release,
)
from kiln.oci.blobstore import BlobStore
from kiln.oci.layer import Entry
from kiln.oci.referrers import EMPTY_JSON, MEDIA_EMPTY, Artifact, artifact
from kiln.oci.sources import BaseImage
from kiln.oci.types import Image

STATUS = "/var/lib/dpkg/status"
CREATED = "org.opencontainers.image.created"


def model_files(model_copy: Path, mount: str) -> tuple[ModelFile, ...]:
    """Each regular file of the model's checked copy, by its path in the image, with its sha256."""
    found: list[ModelFile] = []
    for current, dirnames, filenames in os.walk(model_copy):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(current) / name
            if path.is_symlink() or not path.is_file():
                continue
            relative = path.relative_to(model_copy).as_posix()
            found.append(ModelFile(f"{mount}/{relative}", _sha256(path)))
    return tuple(sorted(found, key=lambda f: f.path))


def image_sbom(
    *,
    spec: ImageSpec,
    env: EnvSpec,
    base: BaseImage,
    status: bytes | None,
    model: tuple[ModelFile, ...] | None,
    epoch: int,
) -> bytes:
    """The SBOM of the image ``spec`` describes: ``status`` is the dpkg status the system-packages layer
    wrote (None: it wrote none, the base's stands)."""
    base_status = (base.files.read(STATUS) or b"").decode("utf-8", "replace")
    final = status.decode("utf-8", "replace") if status is not None else base_status
    before = {(p.name, p.architecture, p.version) for p in installed_packages(base_status)}
    packages = installed_packages(final)
    added = frozenset(p.name for p in packages if (p.name, p.architecture, p.version) not in before)
    lock = parse_lock(env.lock_file.read_text(encoding="utf-8")) if env.lock_file is not None else ()
    inputs = SbomInputs(
        title=dict(spec.labels).get("org.opencontainers.image.title", "kiln image"),
        platform=env.target.os_arch,
        python=lock,
        kiln_version=spec.kiln_version,
        kiln_wheel_sha256=(env.kiln_wheel_digest or _sha256(env.kiln_wheel)).removeprefix("sha256:"),
        debian=packages,
        added_debian=added,
        distro=os_release((base.files.read("/etc/os-release") or b"").decode("utf-8", "replace")),
        model=model,
        epoch=epoch,
    )
    return make_sbom(inputs)


def carry(job: LayerJob, sbom: bytes) -> LayerJob:
    """``job`` with the SBOM written at ``SBOM_PATH`` too (and its digest in the job's cache key)."""
    fill = job.fill

    def with_sbom(root: Path) -> Sequence[Entry]:
        return [*fill(root), Entry.file(SBOM_PATH, sbom)]

    inputs = {**job.inputs, "sbom": hashlib.sha256(sbom).hexdigest()}
    return dataclasses.replace(job, inputs=inputs, fill=with_sbom)


def provenance(
    image: Image,
    *,
    name: str,
    env: EnvSpec,
    base: BaseImage,
    spec: ImageSpec,
    model: tuple[ModelFile, ...] | None,
    sbom: bytes,
    parameters: Mapping[str, Any],
    epoch: int,
) -> bytes:
    """The in-toto statement (SLSA provenance v1) for ``image``, built as ``name`` (its tag is dropped)."""
    labels = dict(spec.labels)
    dependencies = []
    if model is not None:
        dependencies.append(Dependency("model", model_digest(model), labels.get("io.kiln.model.uri")))
    dependencies += [
        Dependency("lock", env.lock_digest, "file:///opt/kiln/requirements.lock"),
        Dependency("base image", base.digest, f"docker://{base.name}" if base.name else None),
        Dependency(
            "kiln",
            env.kiln_wheel_digest or _sha256(env.kiln_wheel),
            f"pkg:pypi/kiln@{spec.kiln_version}",
        ),
    ]
    inputs = ProvenanceInputs(
        subject_name=_without_tag(name),
        subject_digest=image.digest,
        kiln_version=spec.kiln_version,
        parameters={**parameters, "platform": env.target.os_arch},
        dependencies=tuple(dependencies),
        epoch=epoch,
        byproducts=(Dependency("sbom", hashlib.sha256(sbom).hexdigest(), f"file://{SBOM_PATH}"),),
        internal={"baseConfigDigest": base.config_digest},
    )
    return statement(inputs)


def attachments(
    image: Image,
    *,
    sbom: bytes,
    statement_bytes: bytes,
    store: BlobStore,
    epoch: int,
    signer: Signer | None = None,
) -> tuple[Artifact, ...]:
    """The SBOM and the provenance as artifacts whose subject is ``image``'s manifest."""
    empty = store.put_bytes(EMPTY_JSON, MEDIA_EMPTY)
    created = {CREATED: _iso(epoch)}
    signed = (signer or Unsigned()).sign(statement_bytes)
    return (
        artifact(
            image.manifest_descriptor, MEDIA_CYCLONEDX, store.put_bytes(sbom, MEDIA_CYCLONEDX), empty, created
        ),
        artifact(
            image.manifest_descriptor,
            signed.media_type,
            store.put_bytes(signed.data, signed.media_type),
            empty,
            {**created, PREDICATE_ANNOTATION: PREDICATE_TYPE},
        ),
    )


def _without_tag(name: str) -> str:
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
