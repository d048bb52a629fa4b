"""The image's SBOM: a CycloneDX 1.6 document of everything in it, the same bytes for the same image.

Components, each with a package URL as its ``bom-ref``:

- every Python package of the lock (``pkg:pypi/NAME@VERSION``), with every sha256 the lock allows;
- with ``--env-manager conda``, every conda package of the conda lock (``pkg:conda/NAME@VERSION``
  with its build, channel and subdir), with its sha256;
- kiln itself (``pkg:pypi/kiln@VERSION``), with the sha256 of the wheel installed;
- every Debian package dpkg records as installed (``pkg:deb/debian/NAME@VERSION?arch=...``), the
  base's and the ones kiln added (property ``kiln:origin`` says which);
- the model (type ``machine-learning-model``) with each of its files (type ``file``, path in the
  image, sha256).

Nothing in it comes from the clock, a host path, the tag or the base's registry: the timestamp is
``SOURCE_DATE_EPOCH``, the serial number a UUID made from the document's own digest, so two builds
of the same inputs write the same bytes (and the model layer that carries it stays the same).
"""

from __future__ import annotations

import hashlib
import json
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from kiln.env.conda.lock import CondaPackage
from kiln.env.lockfile import LockEntry
from kiln.oci.canonical import canonical_json

MEDIA_CYCLONEDX = "application/vnd.cyclonedx+json"
SPEC_VERSION = "1.6"


@dataclass(frozen=True)
class DebPackage:
    """One installed package of the dpkg database."""

    name: str
    version: str
    architecture: str
    source: str | None = None


@dataclass(frozen=True)
class ModelFile:
    path: str
    """The path in the image (``/opt/ml/model/MLmodel``)."""
    sha256: str


@dataclass(frozen=True)
class SbomInputs:
    """What the image holds, as the build knows it (all content, no host paths)."""

    title: str
    """What the image is (``kiln: sklearn_iris``): the document's subject."""
    platform: str
    python: tuple[LockEntry, ...]
    kiln_version: str
    kiln_wheel_sha256: str
    debian: tuple[DebPackage, ...]
    added_debian: frozenset[str]
    """Names of the Debian packages kiln added (the rest are the base's)."""
    distro: tuple[str, str]
    """``(ID, VERSION_ID)`` of ``/etc/os-release`` (``("debian", "12")``)."""
    model: tuple[ModelFile, ...] | None
    """None: a model-agnostic image."""
    epoch: int
    conda: tuple[CondaPackage, ...] = ()
    """The conda lock's packages (``--env-manager conda``; ``python`` is then its pip section)."""


def installed_packages(status: str) -> tuple[DebPackage, ...]:
    """Every ``install ok installed`` stanza of a dpkg status file, sorted by name and architecture."""
    found: list[DebPackage] = []
    for stanza in status.split("\n\n"):
        fields = _fields(stanza)
        if fields.get("Status") != "install ok installed" or "Package" not in fields:
            continue
        source = fields.get("Source", "").split(" ", 1)[0] or None
        found.append(
            DebPackage(fields["Package"], fields.get("Version", ""), fields.get("Architecture", ""), source)
        )
    return tuple(sorted(found, key=lambda p: (p.name, p.architecture)))


def os_release(text: str) -> tuple[str, str]:
    """``(ID, VERSION_ID)`` of an ``/etc/os-release``."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("\"'")
    return values.get("ID", "linux"), values.get("VERSION_ID", "")


def make_sbom(inputs: SbomInputs) -> bytes:
    """The CycloneDX JSON document (canonical: sorted keys, no spaces)."""
    python = [_python(entry) for entry in inputs.python]
    kiln = Component(
        type=ComponentType.LIBRARY, name="kiln", version=inputs.kiln_version,
        purl=PackageURL("pypi", name="kiln", version=inputs.kiln_version),
        bom_ref=f"pkg:pypi/kiln@{inputs.kiln_version}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=inputs.kiln_wheel_sha256)],
        properties=[Property(name="kiln:origin", value="kiln")],
    )  # fmt: skip
    debian = [_deb(p, inputs.distro, added=p.name in inputs.added_debian) for p in inputs.debian]
    components = [*python, *(_conda(package) for package in inputs.conda), kiln, *debian]
    if inputs.model is not None:
        components.append(_model(inputs.title, inputs.model))
    subject = Component(
        type=ComponentType.CONTAINER, name=inputs.title, bom_ref="image",
        properties=[Property(name="kiln:platform", value=inputs.platform)],
    )  # fmt: skip
    tool = Component(type=ComponentType.APPLICATION, name="kiln", version=inputs.kiln_version)
    metadata = BomMetaData(
        component=subject, tools=[], timestamp=datetime.fromtimestamp(inputs.epoch, tz=timezone.utc)
    )
    metadata.tools.components.add(tool)
    bom = Bom(components=components, metadata=metadata, serial_number=uuid.UUID(int=0))
    bom.register_dependency(subject, components)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library warns about components without dependencies
        document = json.loads(JsonV1Dot6(bom).output_as_string())
    return _with_serial(document)


def _with_serial(document: dict[str, object]) -> bytes:
    """The serial number is a UUID (version 5 layout) of the document's digest without it."""
    document.pop("serialNumber", None)
    digest = hashlib.sha256(canonical_json(document)).digest()
    document["serialNumber"] = f"urn:uuid:{uuid.UUID(bytes=digest[:16], version=5)}"
    return canonical_json(document)


def _python(entry: LockEntry) -> Component:
    return Component(
        type=ComponentType.LIBRARY, name=entry.name, version=entry.version,
        purl=PackageURL("pypi", name=entry.name, version=entry.version),
        bom_ref=f"pkg:pypi/{entry.name}@{entry.version}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=h) for h in sorted(entry.hashes)],
        properties=[Property(name="kiln:origin", value="lock")],
    )  # fmt: skip


def _conda(package: CondaPackage) -> Component:
    kind = "conda" if package.filename.endswith(".conda") else "tar.bz2"
    qualifiers = {"build": package.build, "channel": package.channel, "subdir": package.subdir, "type": kind}
    purl = PackageURL("conda", name=package.name, version=package.version, qualifiers=qualifiers)
    return Component(
        type=ComponentType.LIBRARY, name=package.name, version=package.version, purl=purl,
        bom_ref=purl.to_string(), hashes=[HashType(alg=HashAlgorithm.SHA_256, content=package.sha256)],
        properties=[Property(name="kiln:origin", value="conda")],
    )  # fmt: skip


def _deb(package: DebPackage, distro: tuple[str, str], *, added: bool) -> Component:
    name, version = distro
    qualifiers = {"arch": package.architecture, "distro": f"{name}-{version}" if version else name}
    purl = PackageURL(
        "deb", namespace=name, name=package.name, version=package.version, qualifiers=qualifiers
    )
    properties = [Property(name="kiln:origin", value="added" if added else "base")]
    if package.source and package.source != package.name:
        properties.append(Property(name="kiln:deb-source", value=package.source))
    return Component(
        type=ComponentType.LIBRARY, name=package.name, version=package.version, purl=purl,
        bom_ref=purl.to_string(), properties=properties,
    )  # fmt: skip


def model_digest(files: Sequence[ModelFile]) -> str:
    """One sha256 for the model: of its files' ``path NUL sha256`` lines, sorted by path."""
    ordered = sorted(files, key=lambda f: f.path)
    return hashlib.sha256("".join(f"{f.path}\0{f.sha256}\n" for f in ordered).encode()).hexdigest()


def _model(title: str, files: Sequence[ModelFile]) -> Component:
    digest = model_digest(files)
    children = [
        Component(
            type=ComponentType.FILE,
            name=f.path,
            bom_ref=f"file:{f.path}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=f.sha256)],
        )
        for f in files
    ]
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=title, bom_ref="model", components=children,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)],
        properties=[Property(name="kiln:digest-of", value="the sorted 'path NUL sha256' lines of its files")],
    )  # fmt: skip


def _fields(stanza: str) -> Mapping[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line[:1] in (" ", "\t"):
            continue  # a folded field's later lines (Description, Conffiles)
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields
