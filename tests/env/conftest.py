"""Fixtures for kiln.env: a per-session kiln cache, and a real PEP 503 index served over HTTP."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name


@pytest.fixture(scope="session")
def kiln_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kiln-cache")


@pytest.fixture
def kiln_cache(kiln_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """KILN_CACHE_DIR for this test: shared by the session, so later tests reuse earlier wheels."""
    monkeypatch.setenv("KILN_CACHE_DIR", str(kiln_cache_dir))
    return kiln_cache_dir


class PackageIndex:
    """A directory laid out as a PEP 503 simple index, served by http.server on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = root / "files"
        self.files.mkdir(parents=True)
        (root / "simple").mkdir()
        self.authorizations: list[str] = []
        index = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                index.authorizations.append(self.headers.get("Authorization", ""))
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/simple/"

    def add(self, name: str, filename: str, data: bytes) -> None:
        (self.files / filename).write_bytes(data)
        project = self.root / "simple" / canonicalize_name(name)
        project.mkdir(exist_ok=True)
        links = []
        for path in sorted(self.files.iterdir()):
            if canonicalize_name(path.name.split("-")[0]) == canonicalize_name(name):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                links.append(
                    f'<a href="../../files/{html.escape(path.name)}#sha256={digest}">{path.name}</a>'
                )
        (project / "index.html").write_text(
            "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n", encoding="utf-8"
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def package_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackageIndex]:
    index = PackageIndex(tmp_path_factory.mktemp("index"))
    try:
        yield index
    finally:
        index.close()


def pure_wheel(name: str, version: str, files: dict[str, str]) -> tuple[str, bytes]:
    """A minimal valid ``py3-none-any`` wheel: ``(file name, bytes)``."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    entries = [(path, text.encode()) for path, text in sorted(files.items())]
    entries.append(
        (f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode())
    )
    entries.append(
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    )
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in entries
    )
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in entries:
            archive.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), data)
    return f"{dist}-{version}-py3-none-any.whl", buffer.getvalue()


def native_sdist(name: str, version: str) -> tuple[str, bytes]:
    """An sdist whose setup.py declares extension modules, so its wheel is platform-specific."""
    dist = name.replace("-", "_")
    base = f"{dist}-{version}"
    files = {
        f"{base}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{base}/pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        ),
        f"{base}/setup.py": (
            "from setuptools import setup\n"
            "from setuptools.dist import Distribution\n\n"
            "class Native(Distribution):\n"
            "    def has_ext_modules(self):\n"
            "        return True\n\n"
            f"setup(name={name!r}, version={version!r}, packages=[{dist!r}], distclass=Native)\n"
        ),
        f"{base}/{dist}/__init__.py": "",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(path)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return f"{base}.tar.gz", buffer.getvalue()
