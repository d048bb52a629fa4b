"""A two-platform base for the multi-arch tests: the test base (amd64) and an arm64 twin, as one OCI
layout whose ``3.11-slim`` is an image index.

The arm64 twin is ``kiln-test/python:3.11-slim-arm64`` in the Docker engine: Debian bookworm for
arm64 made by ``debootstrap --arch=arm64`` (its second stage runs arm64 binaries, so it needs
qemu-user-static registered with binfmt; about 15 minutes on two cores, once) with the same steps
as ``scripts/make-base-image.sh``. ``docker import`` records the host's architecture whatever the
rootfs holds, so the layout's arm64 config is written with ``architecture: arm64`` here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ARM64_BASE = "kiln-test/python:3.11-slim-arm64"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
AARCH64_ELF = 183
"""``e_machine`` of an AArch64 ELF file."""


def binfmt_ready() -> str | None:
    """None when arm64 binaries run here (qemu-aarch64 registered with binfmt), else why not."""
    if not (BINFMT / "register").exists():
        done = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, text=True
        )
        if done.returncode != 0:
            return f"binfmt_misc cannot be mounted: {done.stderr.strip()}"
    if not (BINFMT / "qemu-aarch64").exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not (BINFMT / "qemu-aarch64").exists():
        return "qemu-aarch64 is not registered with binfmt_misc (install qemu-user-static binfmt-support)"
    return None


def ensure_arm64_base(docker: str) -> None:
    """Make ``ARM64_BASE`` in the engine unless it is there (needs binfmt; see ``binfmt_ready``)."""
    if subprocess.run([docker, "image", "inspect", ARM64_BASE], capture_output=True).returncode == 0:
        return
    with tempfile.TemporaryDirectory(prefix="kiln-rootfs-arm64-") as root:
        subprocess.run(
            ["debootstrap", "--arch=arm64", "--variant=minbase",
             "--include=python3,python3-venv,ca-certificates", "bookworm", root, "http://deb.debian.org/debian"],
            check=True, capture_output=True, timeout=3600,
        )  # fmt: skip
        for name in ("python3", "python"):
            link = Path(root) / "usr/local/bin" / name
            link.unlink(missing_ok=True)
            link.symlink_to("/usr/bin/python3")
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
            shutil.rmtree(Path(root) / junk, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", root, "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            [docker, "import",
             "--change", "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]', "-", ARM64_BASE],
            stdin=tar.stdout, check=True, capture_output=True, timeout=1800,
        )  # fmt: skip
        tar.wait()


def write_multiarch_layout(dest: Path, saves: dict[str, Path], tag: str = "3.11-slim") -> None:
    """An OCI layout at ``dest`` whose ``tag`` is an index of the ``docker save`` archives in ``saves``
    (by architecture: ``{"amd64": ..., "arm64": ...}``), layers as plain tars."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    entries = []
    for arch, archive in saves.items():
        with tarfile.open(archive) as tar:
            (saved,) = json.loads(_read(tar, "manifest.json"))
            config = json.loads(_read(tar, saved["Config"]))
            layers = [
                _put(blobs, _read(tar, name), "application/vnd.oci.image.layer.v1.tar")
                for name in saved["Layers"]
            ]
        config["architecture"] = arch
        config.pop("variant", None)
        if arch == "arm64":
            config["variant"] = "v8"
        config_descriptor = _put(blobs, _json(config), "application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_descriptor,
            "layers": layers,
        }
        entry = _put(blobs, _json(manifest), manifest["mediaType"])
        entry["platform"] = {
            "os": "linux",
            "architecture": arch,
            **({"variant": "v8"} if arch == "arm64" else {}),
        }
        entries.append(entry)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    top = _put(blobs, _json(index), index["mediaType"])
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_bytes(_json({"schemaVersion": 2, "manifests": [top]}))


def elf_machine(data: bytes) -> int | None:
    """``e_machine`` of an ELF file's first bytes (little-endian), None when it is not ELF."""
    if data[:4] != b"\x7fELF" or len(data) < 20:
        return None
    return int.from_bytes(data[18:20], "little")


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    assert handle is not None, name
    return handle.read()


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _put(blobs: Path, data: bytes, media_type: str) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
