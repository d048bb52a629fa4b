"""A base image from a registry: only its manifest(s) and config are fetched; layers stay remote."""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from kiln.errors import RegistryError, UsageError
from kiln.oci.reference import Reference, parse_reference
from kiln.oci.registry.client import Manifest, RegistryClient
from kiln.oci.types import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, Blob, Descriptor

# What Docker assumes when an index entry or a request names no variant.
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True)
class RemoteBase:
    """A base image that lives in a registry, pinned by the digest of its platform manifest."""

    reference: Reference
    """The reference as resolved: the tag as given, ``digest`` = the platform manifest's digest."""
    manifest: bytes
    media_type: str
    digest: str
    """The platform manifest's digest (``org.opencontainers.image.base.digest``)."""
    index_digest: str | None
    """The digest of the index the tag pointed to, when it was a multi-platform image."""
    config: bytes
    config_descriptor: Descriptor
    layers: tuple[Blob, ...]
    """``path=None``, ``source=registry/repository``, ``diff_id`` from the config."""

    @property
    def source(self) -> str:
        """``registry/repository``: where the layers can be mounted or fetched from."""
        return self.reference.name

    @property
    def config_blob(self) -> Blob:
        return Blob(self.config_descriptor, source=self.source)


def fetch_base(reference: str | Reference, platform: str) -> RemoteBase:
    """Resolve ``reference`` for ``platform`` (``os/arch[/variant]``) and fetch its manifest and config."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    wanted = _parse_platform(platform)
    with RegistryClient(ref.registry) as client:
        top = client.get_manifest(ref.repository, ref.target)
        index_digest = None
        manifest = top
        if top.media_type in INDEX_MEDIA_TYPES:
            index_digest = top.digest
            chosen = _pick_platform(ref, top, wanted)
            manifest = client.get_manifest(ref.repository, chosen)
        if manifest.media_type not in MANIFEST_MEDIA_TYPES:
            raise RegistryError(
                f"base image {ref}: the registry served a {manifest.media_type or 'untyped'} manifest; "
                f"kiln reads OCI and Docker v2 image manifests ({', '.join(MANIFEST_MEDIA_TYPES)})",
                registry=ref.registry,
                repository=ref.repository,
            )
        body = _json(ref, manifest)
        config_descriptor = _descriptor(ref, body.get("config"))
        with client.open_blob(ref.repository, config_descriptor.digest) as chunks:
            config = b"".join(chunks)
    layers = _layers(ref, body, config)
    if index_digest is None:
        _check_platform(ref, config, wanted)
    return RemoteBase(
        reference=ref.with_digest(manifest.digest),
        manifest=manifest.data,
        media_type=manifest.media_type,
        digest=manifest.digest,
        index_digest=index_digest,
        config=config,
        config_descriptor=config_descriptor,
        layers=layers,
    )


def stream_layer(base: RemoteBase, blob: Blob) -> Generator[bytes, None, None]:
    """The bytes of one of ``base``'s layers, as stored (gzip'd), verified against its digest.

    A generator: the connection closes when it is exhausted or closed; a digest mismatch
    raises RegistryError at the end.
    """
    source = parse_reference(blob.source) if blob.source else base.reference
    with (
        RegistryClient(source.registry) as client,
        client.open_blob(source.repository, blob.digest) as chunks,
    ):
        yield from chunks


def _parse_platform(platform: str) -> tuple[str, str, str | None]:
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {platform!r}: expected OS/ARCH[/VARIANT], e.g. 'linux/amd64'")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def _platform_text(os_name: str, arch: str, variant: str | None) -> str:
    return f"{os_name}/{arch}" + (f"/{variant}" if variant else "")


def _pick_platform(ref: Reference, index: Manifest, wanted: tuple[str, str, str | None]) -> str:
    """The digest of the index entry for ``wanted``; an entry without variant matches the default one."""
    os_name, arch, variant = wanted
    want_variant = variant or _DEFAULT_VARIANTS.get(arch)
    available: list[str] = []
    fallback: str | None = None
    for entry in _json(ref, index).get("manifests") or []:
        platform = entry.get("platform") or {}
        entry_os, entry_arch = platform.get("os", ""), platform.get("architecture", "")
        entry_variant = platform.get("variant") or None
        if entry_os == "unknown":  # attestation manifests (BuildKit's provenance, SBOMs)
            continue
        available.append(_platform_text(entry_os, entry_arch, entry_variant))
        if (entry_os, entry_arch) != (os_name, arch):
            continue
        if (entry_variant or _DEFAULT_VARIANTS.get(arch)) == want_variant:
            return str(entry["digest"])
        if variant is None and fallback is None:
            fallback = str(entry["digest"])
    if fallback is not None:
        return fallback
    raise RegistryError(
        f"base image {ref} has no manifest for platform {_platform_text(*wanted)}; it has: "
        f"{', '.join(available) or 'none'}",
        hint="pass --platform with one of those, or pick a base image built for your platform",
        registry=ref.registry,
        repository=ref.repository,
    )


def _check_platform(ref: Reference, config: bytes, wanted: tuple[str, str, str | None]) -> None:
    """A single-platform base must be for the platform asked for (its config says which)."""
    try:
        body = json.loads(config)
        os_name, arch = body.get("os"), body.get("architecture")
        variant = body.get("variant") or _DEFAULT_VARIANTS.get(str(arch))
    except (ValueError, AttributeError):
        return
    if not os_name or not arch:
        return
    want_os, want_arch, want_variant = wanted
    if (os_name, arch) != (want_os, want_arch) or (want_variant and variant != want_variant):
        raise RegistryError(
            f"base image {ref} is for {_platform_text(os_name, arch, body.get('variant'))}, "
            f"not {_platform_text(*wanted)}",
            hint="pass --platform with the base image's platform, or pick a base image built for yours",
            registry=ref.registry,
            repository=ref.repository,
        )


def _layers(ref: Reference, body: dict[str, Any], config: bytes) -> tuple[Blob, ...]:
    try:
        config_json = json.loads(config)
        diff_ids = list(config_json["rootfs"]["diff_ids"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryError(
            f"base image {ref}: its config has no rootfs.diff_ids",
            registry=ref.registry,
            repository=ref.repository,
        ) from exc
    descriptors = [_descriptor(ref, layer) for layer in body.get("layers") or []]
    if len(descriptors) != len(diff_ids):
        raise RegistryError(
            f"base image {ref}: the manifest lists {len(descriptors)} layers but the config "
            f"{len(diff_ids)} diff_ids",
            registry=ref.registry,
            repository=ref.repository,
        )
    return tuple(
        Blob(descriptor, source=ref.name, diff_id=str(diff_id))
        for descriptor, diff_id in zip(descriptors, diff_ids)
    )


def _json(ref: Reference, manifest: Manifest) -> dict[str, Any]:
    try:
        return manifest.json()
    except ValueError as exc:
        raise RegistryError(
            f"base image {ref}: manifest {manifest.digest} is not a JSON object",
            registry=ref.registry,
            repository=ref.repository,
        ) from exc


def _descriptor(ref: Reference, value: object) -> Descriptor:
    try:
        assert isinstance(value, dict)
        annotations = tuple(sorted((value.get("annotations") or {}).items()))
        return Descriptor(str(value["mediaType"]), str(value["digest"]), int(value["size"]), annotations)
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RegistryError(
            f"base image {ref}: a descriptor in its manifest lacks mediaType, digest or size: "
            f"{str(value)[:200]}",
            registry=ref.registry,
            repository=ref.repository,
        ) from exc
