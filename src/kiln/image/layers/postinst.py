"""The few effects of maintainer scripts that kiln's images rely on, done on the host.

``--backend oci`` runs no maintainer script (``kiln.image.layers.system``). nginx needs none
of them; a JRE (``--install-java``) needs two, which are done here from the unpacked files:

- **alternatives**: openjdk's postinst registers ``/usr/bin/java`` (and keytool, ...) with
  ``update-alternatives``; kiln writes the same links (``/usr/bin/java ->
  /etc/alternatives/java -> <JRE>/bin/java``) and dpkg's admin file for each headless tool
  the JRE's ``.jinfo`` names, unless the base already has that alternative.
- **the Java CA keystore**: ca-certificates-java's postinst runs java to fill
  ``/etc/ssl/certs/java/cacerts`` (a JKS keystore, password ``changeit``) from the system's
  CA certificates (``/etc/ssl/certs/*.pem``); without it Java cannot verify any TLS peer.
  kiln writes the JKS itself, with the same ``debian:<name>.pem`` aliases, sorted, and a fixed
  timestamp so the same certificates give the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
import struct
from collections.abc import Sequence
from pathlib import Path

from kiln.image.layers.apt import ListableFiles
from kiln.image.layers.debs import Unpacked
from kiln.oci.basefs import realpath

CACERTS = "/etc/ssl/certs/java/cacerts"
CACERTS_PASSWORD = "changeit"
CERTS_DIR = "/etc/ssl/certs"
CERT_SOURCES = ("/usr/share/ca-certificates/", "/usr/local/share/ca-certificates/")
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)
_JKS_MAGIC = 0xFEEDFEED
_JKS_VERSION = 2
_JKS_TRUSTED_CERT = 2


def finish(dest: Path, files: ListableFiles, unpacked: Sequence[Unpacked]) -> list[str]:
    """Do what the unpacked packages' postinsts would have done that kiln needs; ``files`` is the
    base with ``dest`` on top. Returns a line per effect, for the build's progress."""
    done: list[str] = []
    names = {u.package for u in unpacked}
    jinfos = [path for u in unpacked for path in u.paths if path.endswith(".jinfo")]
    for jinfo in jinfos:
        done += java_alternatives(dest, files, jinfo)
    if "ca-certificates-java" in names:
        count = write_cacerts(dest, files)
        done.append(f"wrote {CACERTS} with {count} CA certificates")
    return done


def java_alternatives(dest: Path, files: ListableFiles, jinfo: str) -> list[str]:
    """``update-alternatives --install /usr/bin/NAME NAME PATH PRIORITY`` for each headless tool."""
    text = (files.read(jinfo) or b"").decode("utf-8")
    priority = next(
        (line.split("=", 1)[1] for line in text.splitlines() if line.startswith("priority=")), "0"
    )
    made = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] != "hl":
            continue
        _kind, name, target = parts
        admin = f"/var/lib/dpkg/alternatives/{name}"
        if files.entry(target) is None or files.entry(admin) is not None or files.entry(f"/usr/bin/{name}"):
            continue
        _symlink(dest, f"/usr/bin/{name}", f"/etc/alternatives/{name}")
        _symlink(dest, f"/etc/alternatives/{name}", target)
        _write(dest, admin, f"auto\n/usr/bin/{name}\n\n{target}\n{priority}\n\n".encode())
        made.append(f"/usr/bin/{name} -> {target} (update-alternatives)")
    return made


def write_cacerts(dest: Path, files: ListableFiles) -> int:
    """The JKS keystore of the system's CA certificates; returns how many it holds."""
    entries = sorted(_system_certificates(files))
    _write(dest, CACERTS, jks_keystore(entries, CACERTS_PASSWORD))
    return len(entries)


def _system_certificates(files: ListableFiles) -> list[tuple[str, bytes]]:
    """(alias, DER) for each ``/etc/ssl/certs/*.pem`` link into the CA stores, as the postinst
    finds them (``debian:`` + the lower-cased file name)."""
    found = []
    for name in files.listdir(CERTS_DIR):
        path = f"{CERTS_DIR}/{name}"
        entry = files.entry(path)
        if not name.endswith(".pem") or entry is None or entry.kind != "symlink":
            continue
        real = realpath(files, path) or ""
        data = files.read(path)
        if data is None or not real.startswith(CERT_SOURCES):
            continue
        for block in _PEM.findall(data)[:1]:
            found.append((f"debian:{name.lower()}", base64.b64decode(b"".join(block.split()))))
    return found


def jks_keystore(certificates: Sequence[tuple[str, bytes]], password: str, timestamp_ms: int = 0) -> bytes:
    """A Java KeyStore (JKS, version 2) of trusted certificate entries ``(alias, DER)``.

    The layout Java's ``sun.security.provider.JavaKeyStore`` reads: magic, version, count,
    then per entry its tag, alias, creation time, certificate type and bytes; then a SHA-1
    over the password (UTF-16BE), the string "Mighty Aphrodite" and everything before it.
    """
    body = struct.pack(">III", _JKS_MAGIC, _JKS_VERSION, len(certificates))
    for alias, der in certificates:
        body += struct.pack(">I", _JKS_TRUSTED_CERT) + _utf(alias) + struct.pack(">q", timestamp_ms)
        body += _utf("X.509") + struct.pack(">I", len(der)) + der
    digest = hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + body, usedforsecurity=False)
    return body + digest.digest()


def _utf(text: str) -> bytes:
    """Java's ``DataOutput.writeUTF`` for the ASCII aliases and types used here."""
    data = text.encode("utf-8")
    return struct.pack(">H", len(data)) + data


def _symlink(dest: Path, path: str, target: str) -> None:
    host = _parent(dest, path)
    host.unlink(missing_ok=True)
    host.symlink_to(target)


def _write(dest: Path, path: str, data: bytes) -> None:
    host = _parent(dest, path)
    host.write_bytes(data)
    host.chmod(0o644)


def _parent(dest: Path, path: str) -> Path:
    """``dest/path`` with its missing parent directories made 0755 (not the host's umask)."""
    current = dest
    for part in posixpath.dirname(path).strip("/").split("/"):
        current = current / part
        if not current.is_dir():
            current.mkdir()
            current.chmod(0o755)
    return dest / path.lstrip("/")
