"""A wheel of the running kiln, made from its installed files: kiln is on no index.

The same kiln gives the same bytes: entries sorted, timestamps fixed, one file mode,
no ``__pycache__``. The image installs it with ``--no-deps`` (the lock already holds
kiln's runtime requirements) and its sha256 pins it like every other package.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

from kiln.contract import RUNTIME_REQUIREMENTS
from kiln.env.cache import atomic_write
from kiln.version import __version__

_DATE = (1980, 1, 1, 0, 0, 0)
_MODE = 0o100644 << 16
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def build_kiln_wheel(out_dir: Path) -> tuple[Path, str]:
    """Write ``kiln-<version>-py3-none-any.whl`` into ``out_dir``; return it and ``sha256:<hex>``."""
    package_dir = Path(__file__).resolve().parent.parent  # src/kiln
    version = __version__
    dist_info = f"kiln-{version}.dist-info"
    files = [
        (f"kiln/{path.relative_to(package_dir).as_posix()}", path.read_bytes())
        for path in _files(package_dir)
    ]
    files.append((f"{dist_info}/METADATA", _metadata(version).encode("utf-8")))
    files.append((f"{dist_info}/WHEEL", _WHEEL.encode("utf-8")))
    files.append((f"{dist_info}/top_level.txt", b"kiln\n"))
    record = "".join(f"{name},sha256={_b64_digest(data)},{len(data)}\n" for name, data in files)
    files.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode("utf-8")))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.external_attr = _MODE
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=6)
    payload = buffer.getvalue()
    wheel = out_dir / f"kiln-{version}-py3-none-any.whl"
    atomic_write(wheel, payload)
    return wheel, "sha256:" + hashlib.sha256(payload).hexdigest()


def _files(package_dir: Path) -> list[Path]:
    found = []
    for path in package_dir.rglob("*"):
        parts = path.relative_to(package_dir).parts
        if any(part in _SKIP_DIRS or part.startswith(".") for part in parts):
            continue
        if path.is_file() and not path.name.endswith(_SKIP_SUFFIXES):
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(package_dir).as_posix())


def _metadata(version: str) -> str:
    lines = [
        "Metadata-Version: 2.1",
        "Name: kiln",
        f"Version: {version}",
        "Summary: Package MLflow models into fast, small, reproducible container images.",
        "License: Apache-2.0",
        "Requires-Python: >=3.9",
        *(f"Requires-Dist: {requirement}" for requirement in RUNTIME_REQUIREMENTS),
    ]
    return "\n".join(lines) + "\n"


def _b64_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


_WHEEL = "Wheel-Version: 1.0\nGenerator: kiln\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
