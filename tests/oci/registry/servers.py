"""Small real servers around the registry for tests: a token server, a faulty proxy, object storage.

- ``TokenServer``: the Bearer realm ``docker-registry``'s ``auth: token`` mode trusts. It signs
  RS256 JWTs with a key whose self-signed certificate is the registry's ``rootcertbundle``, takes
  Basic logins or OAuth2 refresh tokens, and records every token request.
- ``FaultProxy``: forwards to the registry and can drop a chosen request before forwarding it
  or drop its answer after, to test resumed uploads.
- ``StorageServer``: the "object store" a redirecting registry sends blob GETs to; it serves the
  registry's blob files and records every request's headers.
- ``make_tls``: a CA and a server certificate for an HTTPS registry.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from tests.registry_support import TLS

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], owner: object) -> Iterator[ThreadingHTTPServer]:
    """Run ``handler`` on 127.0.0.1:<free port> in a thread; ``handler.server.owner`` is ``owner``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.owner = owner  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def owner(self) -> Any:
        return self.server.owner  # type: ignore[attr-defined]

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# ---- token server --------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    method: str
    scopes: tuple[str, ...]
    kind: Literal["basic", "refresh", "anonymous"]
    user: str | None
    granted: bool


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenServer:
    """A Bearer token realm for ``docker-registry``: users by password, or by refresh token."""

    folder: Path
    users: dict[str, str]
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    """refresh token -> user."""
    service: str = "kiln-test-registry"
    issuer: str = "kiln-test-token-issuer"
    requests: list[TokenRequest] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cert_path = self.folder / "token-cert.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def auth_config(self) -> dict[str, Any]:
        """The registry's ``auth:`` section pointing at this server."""
        return {
            "token": {
                "realm": f"{self.url}/token",
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.cert_path),
            }
        }

    @contextmanager
    def running(self) -> Iterator[TokenServer]:
        with serving(_TokenHandler, self) as server:
            self.url = f"http://127.0.0.1:{server.server_address[1]}"
            yield self

    def token(self, user: str | None, scopes: tuple[str, ...]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if user is not None and kind == "repository":
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 30,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


class _TokenHandler(_Quiet):
    def do_GET(self) -> None:
        owner: TokenServer = self.owner
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        scopes = tuple(query.get("scope", []))
        auth = self.headers.get("Authorization")
        user: str | None = None
        kind: Literal["basic", "anonymous"] = "anonymous"
        if auth:
            kind = "basic"
            name, _, password = base64.b64decode(auth.split(" ", 1)[1]).decode().partition(":")
            if owner.users.get(name) != password:
                owner.requests.append(TokenRequest("GET", scopes, kind, name, False))
                self.answer(401, b'{"details":"bad login"}')
                return
            user = name
        owner.requests.append(TokenRequest("GET", scopes, kind, user, True))
        token = owner.token(user, scopes)
        self.answer(200, json.dumps({"token": token, "expires_in": 300}).encode())

    def do_POST(self) -> None:
        owner: TokenServer = self.owner
        form = urllib.parse.parse_qs(self.body().decode())
        scopes = tuple(form.get("scope", [""])[0].split())
        user = owner.refresh_tokens.get(form.get("refresh_token", [""])[0])
        ok = form.get("grant_type") == ["refresh_token"] and user is not None
        owner.requests.append(TokenRequest("POST", scopes, "refresh", user, ok))
        if not ok:
            self.answer(401, b'{"error":"invalid_grant"}')
            return
        self.answer(200, json.dumps({"access_token": owner.token(user, scopes), "expires_in": 300}).encode())


# ---- a proxy that loses requests ---------------------------------------------------------------

Fault = Literal["drop-request", "drop-response"]


@dataclass
class FaultProxy:
    """Forwards to ``target`` (``host:port``); ``fault(method, path)`` may drop one request or answer."""

    target: str
    fault: Callable[[str, str], Fault | None] = lambda method, path: None
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    """(method, path, what happened: forwarded / drop-request / drop-response)."""
    gate: Callable[[str, str], threading.Barrier | None] = lambda method, path: None
    """A barrier that matching requests wait at before being forwarded (to prove they overlap)."""
    gate_broken: bool = False
    """A gated request gave up waiting: fewer requests were in flight at once than the barrier's parties."""
    host: str = ""

    @contextmanager
    def running(self) -> Iterator[FaultProxy]:
        with serving(_ProxyHandler, self) as server:
            self.host = f"127.0.0.1:{server.server_address[1]}"
            yield self


def forward(target: str, request: _Quiet, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """Send ``request`` (with ``body``) on to ``target`` (host:port): the status, body and headers."""
    connection = http.client.HTTPConnection(target, timeout=60)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers["Content-Length"] = str(len(body))
    connection.request(request.command, request.path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data, {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}


class _ProxyHandler(_Quiet):
    def _forward(self) -> None:
        owner: FaultProxy = self.owner
        body = self.body()
        fault = owner.fault(self.command, self.path)
        owner.seen.append((self.command, self.path.split("?")[0], fault or "forwarded"))
        barrier = owner.gate(self.command, self.path)
        if barrier is not None:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                owner.gate_broken = True
        if fault == "drop-request":
            self.close_connection = True
            return
        status, data, out = forward(owner.target, self, body)
        if fault == "drop-response":
            self.close_connection = True
            return
        self.answer(status, data, out)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


# ---- object storage behind a redirect ------------------------------------------------------------


@dataclass
class StorageServer:
    """Serves files under ``root`` (the registry's storage) by path; records each request's headers."""

    root: Path
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    @contextmanager
    def running(self) -> Iterator[StorageServer]:
        with serving(_StorageHandler, self) as server:
            # "localhost", not 127.0.0.1: another origin than the registry, as object storage is.
            self.url = f"http://localhost:{server.server_address[1]}"
            yield self


class _StorageHandler(_Quiet):
    def do_GET(self) -> None:
        owner: StorageServer = self.owner
        owner.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        path = owner.root / urllib.parse.urlsplit(self.path).path.lstrip("/")
        if not path.is_file():
            self.answer(404, b"no such object")
            return
        self.answer(200, path.read_bytes(), {"Content-Type": "application/octet-stream"})

    do_HEAD = do_GET


# ---- a credential helper -----------------------------------------------------------------------


def credential_helper(folder: Path, name: str, answers: dict[str, tuple[str, str]]) -> Path:
    """Write ``docker-credential-NAME`` into ``folder`` (put it on PATH): server -> (username, secret).

    It appends every server address it is asked about to ``folder/NAME.asked``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / f"docker-credential-{name}"
    asked = folder / f"{name}.asked"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"answers = {json.dumps({k: list(v) for k, v in answers.items()})}\n"
        "assert sys.argv[1:] == ['get'], sys.argv\n"
        "server = sys.stdin.read().strip()\n"
        f"open({str(asked)!r}, 'a').write(server + '\\n')\n"
        "if server not in answers:\n"
        "    print('credentials not found in native keychain')\n"
        "    sys.exit(1)\n"
        "user, secret = answers[server]\n"
        "print(json.dumps({'ServerURL': server, 'Username': user, 'Secret': secret}))\n"
    )
    script.chmod(0o755)
    return script


# ---- TLS ---------------------------------------------------------------------------------------


def make_tls(folder: Path, ip: str) -> TLS:
    """A CA and a server certificate for ``ip`` (as an IP SAN) signed by it, as PEM files in ``folder``."""
    import ipaddress

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kiln test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = TLS(ca=folder / "ca.pem", certificate=folder / "server.pem", key=folder / "server-key.pem")
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.certificate.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return tls
