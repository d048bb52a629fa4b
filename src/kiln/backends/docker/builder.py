"""The Docker engine as a Builder: probe a base with docker run, build a context with docker build."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln import contract
from kiln.backends.base import BuildRequest, BuiltImage
from kiln.backends.docker.buildlog import BuildLogParser
from kiln.backends.docker.cli import DockerCli, find_docker, says_unreachable, unavailable
from kiln.backends.docker.sbom import Supplied, combined, engine_base_facts, sbom_context, sbom_of
from kiln.backends.oci import source_date_epoch
from kiln.errors import BuildError
from kiln.image.dockerfile.context import write_context
from kiln.image.probe import BaseImageInfo, ProbeCache, probe_base_image
from kiln.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContextBuild:
    """A ``docker build`` of a directory that holds its Dockerfile."""

    context: Path
    tag: str
    no_cache: bool = False
    platform: str | None = None


class DockerBuilder:
    """Builds with the docker CLI; probes base images with ``docker run``."""

    def __init__(
        self, cli: DockerCli, cache: ProbeCache | None = None, build_args: Mapping[str, str] | None = None
    ) -> None:
        self.cli = cli
        self._cache = cache or ProbeCache()
        self.build_args = dict(build_args or {})
        """``--build-arg`` values handed to every ``docker build``."""

    @classmethod
    def connect(
        cls, environ: Mapping[str, str] | None = None, *, build_args: Mapping[str, str] | None = None
    ) -> DockerBuilder:
        """The builder for the engine ``find_docker`` finds; DockerUnavailableError when none answers."""
        return cls(find_docker(environ), build_args=build_args)

    @property
    def buildkit(self) -> bool:
        return self.cli.buildkit

    def inspect(self, ref: str) -> dict[str, Any] | None:
        """``docker image inspect`` of ``ref`` as a dict, or None when there is no such image."""
        result = self.cli.run(["image", "inspect", ref], timeout=60)
        if result.returncode != 0:
            if says_unreachable(result.stderr):
                raise unavailable(self.cli, result.stderr)
            return None
        data = json.loads(result.stdout)
        return data[0] if data else None

    def probe(self, image: str, *, platform: str | None = None) -> BaseImageInfo:
        details = self.inspect(image)
        if details is None:
            self._pull(image, platform)
            details = self.inspect(image)
            if details is None:
                raise BuildError(f"base image {image!r} is still missing after 'docker pull'")
        os_arch = "/".join(
            part
            for part in (details.get("Os", "linux"), details.get("Architecture"), details.get("Variant"))
            if part
        )

        def run_script(script: str) -> str:
            args = ["run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "/bin/sh"]
            if platform:
                args += ["--platform", platform]
            result = self.cli.run([*args, image, "-c", script], timeout=120)
            if result.returncode != 0:
                raise BuildError(
                    f"could not inspect base image {image!r}: running /bin/sh in it failed "
                    f"(exit {result.returncode}); kiln needs a base image with a shell",
                    log_tail=(result.stderr or result.stdout)[-2000:],
                )
            return result.stdout

        return probe_base_image(
            image, image_id=str(details["Id"]), os_arch=os_arch, run_script=run_script, cache=self._cache
        )

    def _pull(self, image: str, platform: str | None) -> None:
        log.info("pulling base image %s", image)
        args = ["pull", "--quiet", *(["--platform", platform] if platform else []), image]
        result = self.cli.run(args, timeout=1800)
        if result.returncode != 0:
            raise BuildError(
                f"base image {image!r} is not present locally and could not be pulled",
                hint="check the name, log in to its registry ('docker login'), or pass --base-image "
                "naming a local image",
                log_tail=(result.stderr or result.stdout)[-2000:],
            )

    def build(self, request: BuildRequest, progress: Progress) -> BuiltImage:
        """Write ``request``'s build context (Dockerfile, lock, wheels, model) and ``docker build`` it,
        then add its SBOM (``docker/sbom.py``)."""
        return self.build_supplied(request, progress).built

    def build_supplied(self, request: BuildRequest, progress: Progress) -> Supplied:
        """``build``, and the SBOM and facts the image's provenance is made from."""
        epoch = source_date_epoch()  # a bad SOURCE_DATE_EPOCH is refused before the build, not after
        context = request.work / "context"
        progress.detail(f"build context in {context}")
        write_context(
            request.spec, request.env, context, model_dir=request.model_dir, python_dir=request.python_dir
        )
        first = self.build_context(
            ContextBuild(context, request.tag, no_cache=request.no_cache, platform=request.platform), progress
        )
        progress.step(f"SBOM at {contract.SBOM_PATH}")
        base = self.inspect(request.spec.base_image)
        if base is None:
            raise BuildError(f"base image {request.spec.base_image!r} is gone from Docker after the build")
        facts = engine_base_facts(self.cli, request.spec.base_image, base)
        made = sbom_of(self.cli, request, first, facts, epoch)
        context = sbom_context(request, request.tag, made.sbom)  # BuildKit finds local images by name
        second = self.build_context(
            ContextBuild(context, request.tag, no_cache=request.no_cache, platform=request.platform), progress
        )
        progress.detail(f"image {second.image_id[:19]} holds its SBOM ({len(made.sbom)} bytes)")
        if second.image_id != first.image_id:
            # The image below lost its tag to this one; without the tag it is only clutter in
            # 'docker images'. Not forced: one that has another tag, a container or (classic
            # builder) this image as its child stays.
            self.cli.run(["image", "rm", first.image_id], timeout=120)
        return dataclasses.replace(made, built=combined(first, second))

    def build_context(self, build: ContextBuild, progress: Progress) -> BuiltImage:
        """``docker build`` of a context that holds its own Dockerfile."""
        started = time.monotonic()
        parser = BuildLogParser(buildkit=self.buildkit, progress=progress)
        with tempfile.TemporaryDirectory(prefix="kiln-iid-") as tmp:
            iidfile = Path(tmp) / "iid"
            args = self._build_args(build, iidfile)
            log.debug("running %s %s", self.cli.binary, " ".join(args))
            output: deque[str] = deque(maxlen=40)

            def on_line(line: str) -> None:
                output.append(line)
                parser.feed(line)

            returncode = self.cli.stream(args, on_line)
            if returncode != 0:
                text = "".join(output)
                if says_unreachable(text):
                    raise unavailable(self.cli, text)
                step = parser.failed_step
                raise BuildError(
                    f"docker build of {build.tag!r} failed"
                    + (f" at step {step}" if step else f" (exit {returncode})"),
                    log_tail=parser.failure_tail() or "".join(output),
                )
            image_id = iidfile.read_text().strip()
        details = self.inspect(image_id) or {}
        layers = tuple(details.get("RootFS", {}).get("Layers") or ())
        return BuiltImage(
            tag=build.tag,
            image_id=image_id,
            layers=layers,
            steps=parser.steps,
            builder="buildkit" if self.buildkit else "classic",
            seconds=time.monotonic() - started,
        )

    def _build_args(self, build: ContextBuild, iidfile: Path) -> list[str]:
        args = ["buildx", "build", "--load"] if self.cli.mode == "buildx" else ["build"]
        if self.buildkit:
            args.append("--progress=plain")
        args += ["--tag", build.tag, "--iidfile", str(iidfile)]
        if build.no_cache:
            args.append("--no-cache")
        if build.platform:
            args += ["--platform", build.platform]
        for key, value in self.build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        args += ["--file", str(build.context / "Dockerfile"), str(build.context)]
        return args
