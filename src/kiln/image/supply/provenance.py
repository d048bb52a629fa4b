"""The image's provenance: an in-toto Statement v1 with a SLSA provenance v1 predicate, and the place
where signing goes.

The statement's subject is the image's manifest (name without tag, sha256 of the manifest). The
predicate names the builder (kiln and its version), the external parameters (the build options
that shape the image, the platform), and the resolved dependencies: the model (the digest of its
files), the lock, the base image (its manifest digest), kiln's wheel. The SBOM is a byproduct.
Nothing comes from the clock: times are ``SOURCE_DATE_EPOCH``'s, so the same build gives the same
bytes.

It is attached unsigned (``Unsigned``): media type ``application/vnd.in-toto+json``. A ``Signer``
wraps the statement (e.g. in a DSSE envelope, ``application/vnd.dsse.envelope.v1+json``) and
says its media type; the attachment code takes any ``Signer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from kiln.oci.canonical import canonical_json

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:kiln:build-type:oci-image:v1"
"""kiln's build type: an MLflow model, its lock and a base image to an OCI image (by either backend:
``externalParameters.backend`` says which; the Docker backend's subject is the manifest kiln writes
from ``docker save``)."""
BUILDER_ID = "urn:kiln:builder"
"""kiln has no home page to name it by; a URN is a URI, as SLSA asks, that resolves nowhere."""
MEDIA_IN_TOTO = "application/vnd.in-toto+json"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
"""The annotation on the attached artifact that names the predicate (as BuildKit's attestations do)."""


@dataclass(frozen=True)
class Dependency:
    """One resolved input: a name, where it came from (if it has a URI), and its sha256."""

    name: str
    sha256: str
    uri: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "digest": {"sha256": self.sha256.removeprefix("sha256:")}}
        if self.uri:
            out["uri"] = self.uri
        return out


@dataclass(frozen=True)
class ProvenanceInputs:
    subject_name: str
    """The image's name without tag (``registry/team/iris``)."""
    subject_digest: str
    """``sha256:`` of the image manifest."""
    kiln_version: str
    parameters: Mapping[str, Any]
    """The build options that shape the image (``--env-manager``, ``--platform``, ...)."""
    dependencies: tuple[Dependency, ...]
    epoch: int
    byproducts: tuple[Dependency, ...] = ()
    internal: Mapping[str, Any] = field(default_factory=dict)


def statement(inputs: ProvenanceInputs) -> bytes:
    """The in-toto statement (canonical JSON)."""
    when = datetime.fromtimestamp(inputs.epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": dict(inputs.parameters),
            "internalParameters": {"SOURCE_DATE_EPOCH": inputs.epoch, **inputs.internal},
            "resolvedDependencies": [d.to_json() for d in inputs.dependencies],
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"kiln": inputs.kiln_version}},
            # The build's own start and end would make every build's provenance different.
            "metadata": {"startedOn": when, "finishedOn": when},
            "byproducts": [d.to_json() for d in inputs.byproducts],
        },
    }
    return canonical_json(
        {
            "_type": STATEMENT_TYPE,
            "subject": [
                {
                    "name": inputs.subject_name,
                    "digest": {"sha256": inputs.subject_digest.removeprefix("sha256:")},
                }
            ],
            "predicateType": PREDICATE_TYPE,
            "predicate": predicate,
        }
    )


@dataclass(frozen=True)
class Signed:
    """What gets attached: the bytes and their media type."""

    data: bytes
    media_type: str


class Signer(Protocol):
    """Turns a statement into what is attached (a DSSE envelope, a Sigstore bundle)."""

    def sign(self, statement: bytes) -> Signed: ...


class Unsigned:
    """The statement as it is (``application/vnd.in-toto+json``)."""

    def sign(self, statement: bytes) -> Signed:
        return Signed(statement, MEDIA_IN_TOTO)
