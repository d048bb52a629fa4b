"""Assemble an image without a daemon: kiln's layers over a base, then its config and manifest.

The layers are the Docker backend's, in its order: the base's verbatim, system packages
(with the runtime user's ``/etc/passwd`` line), the Python environment (with the lock),
the kiln runtime, the model last. Each is a ``LayerJob``: a cache key naming everything
the layer depends on, and a function that fills a staging directory mirroring the image's
root. A job whose key is in the ``LayerCache`` (and whose blob is still in the store) is
not run at all: a model-only change neither reinstalls nor re-tars the environment.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kiln import contract
from kiln.env.cache import sha256_file
from kiln.env.spec import EnvSpec
from kiln.image.layers.config import History, image_config
from kiln.image.model_files import LargeFile, ModelLayout, copy_model, place_large_files
from kiln.image.spec import ImageSpec, lock_digest
from kiln.oci.blobstore import BlobStore, LayerCache
from kiln.oci.canonical import canonical_json
from kiln.oci.layer import GZIP_LEVEL, Entry, ModePolicy, tree_entries, write_layer
from kiln.oci.manifest import assemble
from kiln.oci.sources import BaseImage
from kiln.oci.types import ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME, MEDIA_OCI_CONFIG, Blob, Image
from kiln.version import __version__

log = logging.getLogger(__name__)

_SAMPLE = 1 << 20


@dataclass(frozen=True)
class LayerJob:
    """One layer kiln adds: what it is called, what it depends on, how to make its tree."""

    name: str
    """Shown in progress and written in the config's history (no paths, no tags)."""
    inputs: Mapping[str, Any]
    """Everything the layer's bytes depend on besides kiln's own code; JSON-serialisable."""
    fill: Callable[[Path], Sequence[Entry]] = field(compare=False)
    """Fills a staging root (the image's ``/``); returns entries to add over the tree."""
    modes: ModePolicy = "normalize"
    gzip_level: int = GZIP_LEVEL
    """0 (stored) for a large model file that does not compress; part of the cache key."""


@dataclass(frozen=True)
class MadeLayer:
    job: LayerJob
    blob: Blob
    reused: bool
    """Taken from the layer cache: its tree was not even made."""
    written: bool
    """New bytes went into the blob store (False: cached, or an identical blob was there)."""


def code_digest() -> str:
    """sha256 of the source of the modules that decide a layer's bytes (kiln's OCI writer and
    installers, the image facts with the pruning rule, the lock scrubber): a change to them is a new layer."""
    return _code_digest()


@cache
def _code_digest() -> str:
    image = Path(__file__).resolve().parent.parent  # src/kiln/image
    files = sorted((image / "layers").glob("*.py")) + sorted((image.parent / "oci").glob("*.py"))
    files += [image / "facts.py", image / "secrets.py"]
    digest = hashlib.sha256(__version__.encode())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def layer_key(job: LayerJob, *, epoch: int) -> str:
    payload = {"layer": job.name, "inputs": job.inputs, "modes": job.modes, "epoch": epoch}
    payload.update(code=code_digest(), gzip=job.gzip_level)
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def make_layer(
    job: LayerJob,
    *,
    store: BlobStore,
    base: BaseImage,
    epoch: int,
    work: Path,
    use_cache: bool = True,
) -> MadeLayer:
    """The layer for ``job``: from the cache when its key is there, else made in ``work`` and stored."""
    cache_ = LayerCache(store)
    key = layer_key(job, epoch=epoch)
    if use_cache:
        cached = cache_.get(key)
        if cached is not None:
            return MadeLayer(job, cached.blob(store), reused=True, written=False)
    work.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=work, prefix="layer-"))
    try:
        extra = job.fill(root)
        entries = [*tree_entries(root, modes=job.modes), *extra]
        result = write_layer(entries, store, base=base.files, epoch=epoch, level=job.gzip_level)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cache_.put(key, result.layer)
    return MadeLayer(job, result.layer.blob(store), reused=False, written=result.written)


def tree_digest(root: Path, *, skip: frozenset[str] = frozenset()) -> str:
    """sha256 over a tree's paths, kinds, modes, link targets and file contents (not its times);
    ``skip``: relative paths left out."""
    digest = hashlib.sha256()
    for current, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = Path(current) / name
            info = path.lstat()
            relative = path.relative_to(root).as_posix()
            if relative in skip:
                continue
            digest.update(f"{relative}\0{stat.S_IFMT(info.st_mode)}\0{stat.S_IMODE(info.st_mode)}\0".encode())
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode() + b"\0")
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
                digest.update(b"\0")
    return digest.hexdigest()


def model_jobs(model_dir: Path, layout: ModelLayout, *, copy: Path) -> list[LayerJob]:
    """The model at /opt/ml/model, root-owned, read-only for the runtime user: a layer per large
    file of ``layout`` (as the Dockerfile's ``COPY --chmod`` of each), then one for the rest (as
    ``COPY model``). ``copy``: where the checked copy goes (its large files are hard links)."""
    copy_model(model_dir, copy, skip=layout.large_paths)
    place_large_files(model_dir, layout, copy, exact_modes=False)
    return [*(_large_file_job(copy, item) for item in layout.large), _small_files_job(copy, layout)]


def _small_files_job(copy: Path, layout: ModelLayout) -> LayerJob:
    skip = {f"{contract.MODEL_DIR}/{path}" for path in layout.large_paths}

    def fill(_root: Path) -> Sequence[Entry]:
        entries = tree_entries(copy, prefix=contract.MODEL_DIR)
        return [Entry.directory(contract.MODEL_DIR), *(e for e in entries if e.path not in skip)]

    return LayerJob("model", {"tree": tree_digest(copy, skip=layout.large_paths)}, fill)


def _large_file_job(copy: Path, item: LargeFile) -> LayerJob:
    source = copy / item.path

    def fill(_root: Path) -> Sequence[Entry]:
        return [
            Entry.directory(contract.MODEL_DIR),
            Entry(f"{contract.MODEL_DIR}/{item.path}", "file", item.mode, source=source),
        ]

    inputs = {"path": item.path, "mode": item.mode, "sha256": sha256_file(source)}
    level = GZIP_LEVEL if compresses(source, item.size) else 0
    return LayerJob(f"model file {item.path} ({item.size >> 20} MiB)", inputs, fill, gzip_level=level)


def compresses(path: Path, size: int) -> bool:
    """Whether deflate saves a tenth or more of a MiB sampled from the file's middle. Weights mostly
    do not (float32 tensors save about 7% at some 10 MB/s a core, random bytes nothing): their
    layer is stored (gzip level 0, as fast as the disk). Decided by content, so deterministic."""
    with open(path, "rb") as handle:
        handle.seek(max(0, size // 2 - _SAMPLE // 2))
        sample = handle.read(_SAMPLE)
    return len(zlib.compress(sample, GZIP_LEVEL)) <= 0.9 * len(sample)


def assemble_image(
    base: BaseImage, spec: ImageSpec, layers: Sequence[MadeLayer], *, store: BlobStore, epoch: int
) -> Image:
    """Config and manifest for ``layers`` over ``base``; the config stored, the manifest by value."""
    history = [History(made.blob.diff_id or "", f"kiln: {made.job.name}") for made in layers]
    config = image_config(
        base.config,
        spec,
        history=history,
        epoch=epoch,
        base_name=base.name or spec.base_image,
        base_digest=base.digest,
    )
    config_blob = store.put_bytes(canonical_json(config), MEDIA_OCI_CONFIG)
    annotations = {ANNOTATION_BASE_DIGEST: base.digest}
    if base.name:
        annotations[ANNOTATION_BASE_NAME] = base.name
    return assemble(config_blob, [*base.layers, *(made.blob for made in layers)], annotations)


def environment_job(
    spec: ImageSpec, env: EnvSpec, base: BaseImage, *, base_python_version: str, python_dir: Path | None
) -> LayerJob:
    """The Python environment (venv or the base's site-packages, bundled CPython, or the conda
    environment) and the lock."""
    from kiln.image.layers.venv import install_environment

    if spec.env_manager == "conda":
        return _conda_job(spec, env, base)

    def fill(root: Path) -> Sequence[Entry]:
        install_environment(
            root,
            spec=spec,
            env=env,
            base=base.files,
            base_python_version=base_python_version,
            python_dir=python_dir,
        )
        return []

    inputs = {
        "base": base.config_digest,
        "spec": _spec_inputs(spec),
        "lock": lock_digest(env),
        "target": [env.target.python_version, env.target.os_arch, env.target.glibc],
        "python": base_python_version,
        "bundled": tree_digest(python_dir) if python_dir is not None else None,
        "bytecode": _bytecode_inputs(spec),
    }
    return LayerJob(f"Python environment ({spec.env_manager}, lock {lock_digest(env)[:19]})", inputs, fill)


def _conda_job(spec: ImageSpec, env: EnvSpec, base: BaseImage) -> LayerJob:
    from kiln.image.layers.conda import conda_inputs, install_conda_layer

    def fill(root: Path) -> Sequence[Entry]:
        install_conda_layer(root, spec=spec, env=env)
        return []

    inputs = {
        "base": base.config_digest,
        "spec": _spec_inputs(spec),
        **conda_inputs(env),
        "bytecode": _bytecode_inputs(spec),
    }
    return LayerJob(f"Python environment (conda, lock {env.lock_digest[:19]})", inputs, fill)


def kiln_job(spec: ImageSpec, env: EnvSpec, base: BaseImage) -> LayerJob:
    """kiln's own wheel, without dependencies, into the environment (plus the installer wheel that a
    model-agnostic image keeps for the opt-in install at start)."""
    from kiln.image.layers.venv import install_kiln

    def fill(root: Path) -> Sequence[Entry]:
        install_kiln(
            root, spec=spec, kiln_wheel=env.kiln_wheel, base=base.files, installer_wheel=env.installer_wheel
        )
        return []

    installer = env.installer_wheel if spec.model_agnostic else None
    inputs = {
        "base": base.config_digest,
        "spec": _spec_inputs(spec),
        "wheel": sha256_file(env.kiln_wheel),
        "agnostic": spec.model_agnostic,
        "installer": sha256_file(installer) if installer is not None else None,
        "bytecode": _bytecode_inputs(spec),
    }
    return LayerJob(f"kiln {spec.kiln_version} runtime", inputs, fill)


def _spec_inputs(spec: ImageSpec) -> dict[str, Any]:
    return {
        "env_manager": spec.env_manager,
        "python_version": spec.python_version,
        "build_python": spec.build_python,
        "python": spec.python,
        "site_packages": spec.site_packages,
        "prune": spec.prune_package_tests,
        "bundled": spec.bundled_python,
    }


def _bytecode_inputs(spec: ImageSpec) -> dict[str, Any]:
    """What the finishing step's output depends on: the compiling interpreter, the strip, kiln's
    rules, the plan."""
    from kiln.image.debuginfo import strip_tool
    from kiln.image.finish import RULES
    from kiln.image.layers.pyinstall import host_python_for

    tool = strip_tool() if spec.strip_debug_info else None
    return {
        "python": _host_python(host_python_for(spec.python_version)),
        "strip": tool[1] if tool else None,
        "rules": RULES,
        "start_only": list(spec.bytecode.start_only),
        "probe": list(spec.bytecode.probe),
    }


def _host_python(path: str | None) -> str | None:
    """The host interpreter that compiles the bytecode, by resolved path (its version decides the pycs)."""
    return os.path.realpath(path) if path else None


def system_job(spec: ImageSpec, base: BaseImage, *, say: Callable[[str], None] | None = None) -> LayerJob:
    """System packages (nginx unless the base has it, a JRE with --install-java) and the runtime
    user's /etc/passwd line: the Dockerfile's apt and user steps, in one layer. Package modes
    are the packages' own (setuid bits included)."""
    from kiln.env.cache import cache_root
    from kiln.image.layers.system import install_system_packages
    from kiln.image.layers.users import add_runtime_user, passwd_line

    def fill(root: Path) -> Sequence[Entry]:
        if spec.system_packages:
            installed = install_system_packages(
                root,
                packages=spec.system_packages,
                base=base.files,
                arch=base.os_arch,
                cache_dir=cache_root() / "debs",
                image=base.reference,
                progress=say,
            )
            if say is not None and installed:
                say(f"unpacked {len(installed)} packages: {', '.join(installed)}")
        add_runtime_user(root, base=base.files, uid=spec.uid, gid=spec.gid)
        return []

    inputs = {
        "base": base.config_digest,
        "packages": list(spec.system_packages),
        "user": passwd_line(spec.uid, spec.gid),
    }
    names = ", ".join(spec.system_packages)
    name = f"system packages ({names}) and the runtime user" if names else "the runtime user"
    return LayerJob(name, inputs, fill, modes="keep")
