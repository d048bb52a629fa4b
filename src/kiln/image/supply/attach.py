"""The SBOM and provenance of one built platform image: made from what the build used, carried in the
image (the SBOM, at ``contract.SBOM_PATH``), and attached to the manifest as OCI artifacts (both).

Both backends make them with these functions, from the same facts: the lock, the base's dpkg
status and os-release (``BaseFacts``), the image's dpkg status, kiln's wheel, the model's files.
``--backend oci`` calls them in order: ``image_sbom`` once the system-packages layer exists (its
dpkg status is the image's), ``carry`` to put the SBOM into the last layer kiln adds,
``provenance`` once the manifest exists, and ``attachments`` for the artifacts a push or a
layout gets. The Docker backend reads the dpkg status from the image it built and adds the SBOM
as one more layer (``kiln.backends.docker.sbom``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kiln import contract
from kiln.env.lockfile import parse_lock
from kiln.env.spec import EnvSpec
from kiln.image.layers.build import LayerJob
from kiln.image.model_files import ENVIRONMENT_FILES, image_content
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
OS_RELEASE = "/etc/os-release"
CREATED = "org.opencontainers.image.created"


@dataclass(frozen=True)
class BaseFacts:
    """What the SBOM and the provenance say of the base image, whichever backend read it."""

    name: str | None
    """How the build named it (``python:3.11-slim``); None when it has no name."""
    digest: str
    """Its manifest digest (``sha256:...``); an image read from Docker without one: its image ID."""
    config_digest: str
    status: str
    """Its dpkg status file (empty: none)."""
    os_release: str


def base_facts(base: BaseImage) -> BaseFacts:
    """The facts of a base the OCI backend opened (from its files, without running it)."""
    return BaseFacts(
        name=base.name or None,
        digest=base.digest,
        config_digest=base.config_digest,
        status=(base.files.read(STATUS) or b"").decode("utf-8", "replace"),
        os_release=(base.files.read(OS_RELEASE) or b"").decode("utf-8", "replace"),
    )


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
            scrubbed = image_content(relative, path.read_bytes()) if relative in ENVIRONMENT_FILES else None
            digest = _sha256(path) if scrubbed is None else hashlib.sha256(scrubbed).hexdigest()
            found.append(ModelFile(f"{mount}/{relative}", digest))
    return tuple(sorted(found, key=lambda f: f.path))


def image_sbom(
    *,
    spec: ImageSpec,
    env: EnvSpec,
    base: BaseFacts,
    status: bytes | None,
    model: tuple[ModelFile, ...] | None,
    epoch: int,
) -> bytes:
    """The SBOM of the image ``spec`` describes: ``status`` is the image's dpkg status (None: the
    system-packages layer wrote none, the base's stands)."""
    final = status.decode("utf-8", "replace") if status is not None else base.status
    before = {(p.name, p.architecture, p.version) for p in installed_packages(base.status)}
    packages = installed_packages(final)
    added = frozenset(p.name for p in packages if (p.name, p.architecture, p.version) not in before)
    lock = parse_lock(env.lock_file.read_text(encoding="utf-8")) if env.lock_file is not None else ()
    conda = env.conda.lock if env.conda is not None else None
    if conda is not None:  # the conda packages, and the pip section's lock for the env's Python
        lock = parse_lock(conda.pip_lock) if conda.pip_lock.strip() else ()
    inputs = SbomInputs(
        title=dict(spec.labels).get("org.opencontainers.image.title", "kiln image"),
        platform=env.target.os_arch,
        python=lock,
        kiln_version=spec.kiln_version,
        kiln_wheel_sha256=(env.kiln_wheel_digest or _sha256(env.kiln_wheel)).removeprefix("sha256:"),
        debian=packages,
        added_debian=added,
        distro=os_release(base.os_release),
        model=model,
        epoch=epoch,
        conda=conda.packages if conda is not None else (),
    )
    return make_sbom(inputs)


def carry(job: LayerJob, sbom: bytes) -> LayerJob:
    """``job`` with the SBOM written at ``contract.SBOM_PATH`` too (and its digest in the job's cache key)."""
    fill = job.fill

    def with_sbom(root: Path) -> Sequence[Entry]:
        return [*fill(root), Entry.file(contract.SBOM_PATH, sbom)]

    inputs = {**job.inputs, "sbom": hashlib.sha256(sbom).hexdigest()}
    return dataclasses.replace(job, inputs=inputs, fill=with_sbom)


def provenance(
    image: Image,
    *,
    name: str,
    env: EnvSpec,
    base: BaseFacts,
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
        byproducts=(Dependency("sbom", hashlib.sha256(sbom).hexdigest(), f"file://{contract.SBOM_PATH}"),),
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
