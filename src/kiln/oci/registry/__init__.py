"""The registry client: pull a base image's manifest and config, push an image, no daemon.

The API the OCI writer uses::

    parse_reference("127.0.0.1:5000/team/model:1") -> Reference
        Docker's grammar; ``python:3.11-slim`` is ``registry-1.docker.io/library/python:3.11-slim``.
        A bad reference raises UsageError saying what is expected.

    fetch_base(reference, platform="linux/amd64") -> RemoteBase
        Only the manifest(s) and the config are fetched. An index is resolved to the platform's
        manifest; ``RemoteBase.reference`` is pinned to its digest; ``RemoteBase.layers`` are
        ``Blob``s with ``path=None``, ``source="registry/repository"`` and ``diff_id`` from the config.

    stream_layer(base, blob) -> Generator[bytes, None, None]
        The stored (compressed) bytes of one base layer, verified against its digest at the end;
        ``.close()`` it when stopping early (that closes the connection).

    push_image(image, "registry/repo:tag", progress=None, jobs=4) -> PushReport
        Per blob, in parallel: HEAD (present: skipped), mount from ``blob.source`` when it is another
        repository of the same registry, else upload ``blob.path`` (one PUT up to 8 MiB, PATCH chunks
        with resume above); a base layer from another registry is copied from there. Then the
        manifest is PUT by digest, then by tag. ``PushReport.blobs`` says what happened to each
        blob (skipped/mounted/uploaded/copied), ``bytes_uploaded`` how much was sent; ``progress``
        gets one ``detail`` line per blob.

    push_index(index, "registry/repo:tag", referrers=...) -> PushReport
        Every platform image as above (its manifest by digest only), then the index by digest and
        tag; ``referrers`` (artifacts: SBOMs, provenance) after, with the referrers API or the
        ``sha256-<hex>`` fallback tag (``referrers.py``). ``list_referrers`` reads them back.

Underneath, one module per concern: ``reference`` (Docker's reference grammar), ``transport``
(HTTP or HTTPS, CA bundle, proxies, ``KILN_INSECURE_REGISTRIES``), ``credentials`` (Docker's
config file and credential helpers), ``auth`` (Basic and Bearer challenges, tokens per scope),
``session`` (the request loop: authorization, redirects that never carry it off the registry,
retries, errors), ``client`` (``RegistryClient``: manifests, blobs, mounts), ``upload`` (PUT or
PATCH chunks with resume). Failures raise ``kiln.errors.RegistryError`` naming the registry,
repository, operation, HTTP status and the registry's error code. See docs/registries.md.
"""

from __future__ import annotations

from kiln.oci.reference import Reference, parse_reference
from kiln.oci.registry.client import Manifest, RegistryClient
from kiln.oci.registry.credentials import Credentials, load_credentials
from kiln.oci.registry.pull import RemoteBase, fetch_base, stream_layer
from kiln.oci.registry.push import PushedBlob, PushReport, push_image, push_index
from kiln.oci.registry.referrers import list_referrers, put_artifacts
from kiln.oci.registry.transport import INSECURE_ENV

__all__ = [
    "INSECURE_ENV",
    "Credentials",
    "Manifest",
    "PushReport",
    "PushedBlob",
    "Reference",
    "RegistryClient",
    "RemoteBase",
    "fetch_base",
    "list_referrers",
    "load_credentials",
    "parse_reference",
    "push_image",
    "push_index",
    "put_artifacts",
    "stream_layer",
]
