"""A real registry for tests: Debian's ``docker-registry`` on 127.0.0.1, storage in a temp dir.

``with started_registry(root) as registry:`` writes a config, starts
``/usr/bin/docker-registry serve`` on a free port, waits for ``/v2/`` and stops it on exit.
``auth=`` takes the config's ``auth:`` section (``htpasswd_auth(...)``, or a token server's),
``redirect_to=`` makes blob GETs answer 307 to that base URL (distribution's ``redirect``
storage middleware: the object-storage case). ``registry.requests(since=mark)`` reads the
registry's own JSON log, so tests count what really reached it.

The session fixture ``registry`` (no auth) is importable by any conftest::

    from tests.registry_support import registry  # noqa: F401
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tracking import free_port

REGISTRY_BINARY = "/usr/bin/docker-registry"


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the registry logged it ("response completed")."""

    method: str
    uri: str
    status: int
    written: int

    @property
    def path(self) -> str:
        return self.uri.split("?", 1)[0]


@dataclass
class Registry:
    """A running ``docker-registry``: ``host`` is ``127.0.0.1:PORT``."""

    host: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]
    tls: TLS | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def mark(self) -> int:
        """A position in the log: pass it to ``requests(since=...)`` to see only later requests."""
        return self.log.stat().st_size

    def requests(self, since: int = 0) -> list[LoggedRequest]:
        """Every request the registry finished since ``since``, oldest first."""
        found = []
        with self.log.open("rb") as handle:
            handle.seek(since)
            for line in handle.read().decode("utf-8", "replace").splitlines():
                if not line.startswith("{"):
                    continue
                entry = json.loads(line)
                message = str(entry.get("msg", ""))
                if message in ("response completed", "response completed with error"):
                    status = int(entry["http.response.status"])
                elif message.startswith("error authorizing context"):
                    status = 401  # the registry logs its auth refusals only this way
                else:
                    continue
                found.append(
                    LoggedRequest(
                        method=entry["http.request.method"],
                        uri=entry["http.request.uri"],
                        status=status,
                        written=int(entry.get("http.response.written", 0)),
                    )
                )
        return found

    def blob_uploads(self, since: int = 0) -> list[LoggedRequest]:
        """Completed blob uploads: the final ``PUT .../blobs/uploads/...?digest=`` answered 201."""
        return [
            r
            for r in self.requests(since)
            if r.method == "PUT" and "/blobs/uploads/" in r.path and "digest=" in r.uri and r.status == 201
        ]

    def mounts(self, since: int = 0) -> list[LoggedRequest]:
        """Cross-repository mounts the registry performed (POST ?mount= answered 201)."""
        return [
            r for r in self.requests(since) if r.method == "POST" and "mount=" in r.uri and r.status == 201
        ]

    def patches(self, since: int = 0) -> list[LoggedRequest]:
        return [r for r in self.requests(since) if r.method == "PATCH"]


def htpasswd_auth(folder: Path, users: dict[str, str]) -> dict[str, Any]:
    """The ``auth:`` section for Basic auth, with a bcrypt htpasswd file made by ``htpasswd -B``."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        pytest.fail("htpasswd is missing: run scripts/setup (it installs apache2-utils)")
    path = folder / "htpasswd"
    lines = []
    for user, password in users.items():
        made = subprocess.run(
            [htpasswd, "-Bbn", user, password], capture_output=True, text=True, check=True, timeout=30
        )
        lines.append(made.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return {"htpasswd": {"realm": "kiln-test", "path": str(path)}}


@dataclass(frozen=True)
class TLS:
    """A server certificate for the registry and the CA file that trusts it (``make_tls``)."""

    ca: Path
    certificate: Path
    key: Path


def _config(
    root: Path, address: str, auth: dict[str, Any] | None, redirect_to: str | None, tls: TLS | None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "json", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": address, "secret": "kiln-test-upload-state-secret"},
    }
    if tls:
        config["http"]["tls"] = {"certificate": str(tls.certificate), "key": str(tls.key)}
    if auth:
        config["auth"] = auth
    if redirect_to:
        config["middleware"] = {"storage": [{"name": "redirect", "options": {"baseurl": redirect_to}}]}
    return config


@contextmanager
def started_registry(
    root: Path,
    *,
    auth: dict[str, Any] | None = None,
    redirect_to: str | None = None,
    host: str = "127.0.0.1",
    tls: TLS | None = None,
    timeout: float = 30.0,
) -> Iterator[Registry]:
    """Run ``docker-registry serve`` with storage under ``root`` until the block ends.

    ``host`` is the address it listens on; ``tls`` makes it speak HTTPS only.
    """
    if not Path(REGISTRY_BINARY).exists():
        pytest.fail(f"{REGISTRY_BINARY} is missing: run scripts/setup (it installs Debian's docker-registry)")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "config.yml"
    config.write_text(yaml.safe_dump(_config(root, f"{host}:{port}", auth, redirect_to, tls)))
    log = root / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    registry = Registry(host=f"{host}:{port}", root=root, log=log, process=process, tls=tls)
    try:
        _wait_ready(registry, timeout)
        yield registry
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait_ready(registry: Registry, timeout: float) -> None:
    def tail() -> str:
        return registry.log.read_text()[-3000:]

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            pytest.fail(f"docker-registry exited with {registry.process.returncode}: {tail()}")
        try:
            context = ssl.create_default_context(cafile=str(registry.tls.ca)) if registry.tls else None
            with urllib.request.urlopen(f"{registry.url}/v2/", timeout=2, context=context):
                return
        except urllib.error.HTTPError:
            return  # 401: up, and asking for credentials
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"docker-registry did not answer on {registry.url} within {timeout}s: {tail()}")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry without auth on 127.0.0.1 for the whole session (use unique repository names)."""
    with started_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running
