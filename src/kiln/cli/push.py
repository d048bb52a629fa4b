"""``kiln push SOURCE REF``: push an OCI layout, a docker-archive or an engine's image with kiln's client."""

from __future__ import annotations

import click

from kiln.cli import main


@main.command("push")
@click.argument("source")
@click.argument("reference", metavar="REGISTRY/REPO:TAG")
@click.option("-q", "--quiet", is_flag=True, help="Print only the pushed digest; errors still go to stderr.")
def push(source: str, reference: str, quiet: bool) -> None:
    """Push an existing image: SOURCE is oci:DIR[:TAG] (an OCI layout: one image or a multi-platform
    index, with its SBOM and provenance), docker-archive:FILE[:REF], or an image in the Docker engine
    (NAME or docker-daemon:NAME). Docker's credentials; see docs/registries.md."""
    from kiln.api.push import push as push_image
    from kiln.cli.build import _progress

    result = push_image(source, reference, progress=_progress(quiet))
    if quiet:
        click.echo(result.digest)
        return
    published = result.published
    click.echo(
        f"Pushed {published.target}: {len(published.uploaded)} blobs uploaded "
        f"({published.bytes_uploaded} bytes), {len(published.reused)} already there"
    )
    for platform, digest in result.platforms:
        click.echo(f"  {platform or 'image'}: {digest}")
    if result.attached:
        click.echo(f"  {result.attached} artifacts attached (SBOM, provenance)")
