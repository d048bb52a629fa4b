"""The Docker backend's SBOM: the document ``--backend oci`` writes, made by the same code from the same
facts, read from the image Docker built.

The Docker backend installs Debian packages with apt-get inside ``docker build``, so which versions
the image holds is known only once it is built. kiln then reads the built image's dpkg status, and the
base's dpkg status and os-release, with ``docker create`` and ``docker cp`` (nothing runs, so any
architecture works), makes the SBOM with ``kiln.image.supply`` from those, the lock, kiln's wheel and
the model's files, and adds it in a second, one-``COPY`` build on top
(``render_sbom_dockerfile``): the image gets one more small layer, and its tag moves to the result.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln import contract
from kiln.backends.base import BuildRequest, BuiltImage
from kiln.backends.docker.cli import DockerCli
from kiln.errors import BuildError
from kiln.image.dockerfile.render import SBOM_FILE, render_sbom_dockerfile
from kiln.image.supply.attach import OS_RELEASE, STATUS, BaseFacts, image_sbom, model_files
from kiln.image.supply.sbom import ModelFile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Supplied:
    """An image the Docker backend built, with its SBOM in it, and what its provenance needs."""

    built: BuiltImage
    sbom: bytes
    base: BaseFacts
    model: tuple[ModelFile, ...] | None
    epoch: int


def read_files(cli: DockerCli, image: str, paths: tuple[str, ...]) -> dict[str, bytes | None]:
    """The content of each of ``paths`` in ``image`` (symlinks followed), None where there is none."""
    created = cli.run(["create", "--entrypoint", "/kiln-never-started", image], timeout=120)
    if created.returncode != 0:
        raise BuildError(
            f"could not read {', '.join(paths)} from image {image!r} for its SBOM: 'docker create' failed "
            f"(exit {created.returncode}): {created.stderr.strip()[-500:]}"
        )
    container = created.stdout.strip()
    found: dict[str, bytes | None] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="kiln-sbom-read-") as tmp:
            for number, path in enumerate(paths):
                target = Path(tmp) / str(number)
                copied = cli.run(["cp", "--follow-link", f"{container}:{path}", str(target)], timeout=120)
                found[path] = target.read_bytes() if copied.returncode == 0 and target.is_file() else None
    finally:
        cli.run(["rm", "--force", container], timeout=120)
    return found


def engine_base_facts(cli: DockerCli, base_image: str, details: Mapping[str, Any]) -> BaseFacts:
    """The base's facts from the engine: ``details`` is its ``docker image inspect``."""
    image_id = str(details["Id"])
    digests = [str(d) for d in details.get("RepoDigests") or []]
    files = read_files(cli, image_id, (STATUS, OS_RELEASE))
    return BaseFacts(
        name=base_image,
        digest=digests[0].rsplit("@", 1)[1] if digests else image_id,
        config_digest=image_id,
        status=(files[STATUS] or b"").decode("utf-8", "replace"),
        os_release=(files[OS_RELEASE] or b"").decode("utf-8", "replace"),
    )


def sbom_of(
    cli: DockerCli, request: BuildRequest, built: BuiltImage, base: BaseFacts, epoch: int
) -> Supplied:
    """The SBOM of the image Docker built for ``request`` (not yet in it); ``epoch``: its timestamp."""
    status = read_files(cli, built.image_id, (STATUS,))[STATUS]
    model = None
    if request.spec.files.model:
        if request.model_dir is None:
            raise ValueError("spec has a model but the request has no model_dir")
        # The same regular files copy_model puts in the context (links stay links, and are left out).
        model = model_files(request.model_dir.resolve(), contract.MODEL_DIR)
    sbom = image_sbom(spec=request.spec, env=request.env, base=base, status=status, model=model, epoch=epoch)
    return Supplied(built, sbom, base, model, epoch)


def sbom_context(request: BuildRequest, image: str, sbom: bytes) -> Path:
    """The build context that adds ``sbom`` to ``image`` (a local name): its Dockerfile and the SBOM."""
    context = request.work / "sbom-context"
    context.mkdir(parents=True, exist_ok=True)
    (context / SBOM_FILE).write_bytes(sbom)
    (context / SBOM_FILE).chmod(0o644)  # the classic builder keeps the context file's mode
    (context / "Dockerfile").write_text(render_sbom_dockerfile(request.spec, image), encoding="utf-8")
    return context


def combined(first: BuiltImage, second: BuiltImage) -> BuiltImage:
    """The image of the SBOM build, reported with the steps and time of both builds."""
    return dataclasses.replace(
        second,
        steps=(*first.steps, *second.steps),
        seconds=first.seconds + second.seconds,
        sbom=contract.SBOM_PATH,
    )
