"""The runtime user's /etc/passwd line, written like the Dockerfile's user step (templates/user.j2).

That step appends ``kiln.image.facts.passwd_line`` to the base's /etc/passwd unless a line
already has that uid; so does ``add_runtime_user``.
"""

from __future__ import annotations

from pathlib import Path

from kiln import contract
from kiln.image import facts
from kiln.oci.types import BaseFiles

PASSWD = "/etc/passwd"


def passwd_line(uid: int = contract.UID, gid: int = contract.GID) -> str:
    """The line the image's user gets, newline-terminated as it goes into the file."""
    return facts.passwd_line(uid, gid) + "\n"


def add_runtime_user(
    dest: Path, *, base: BaseFiles, uid: int = contract.UID, gid: int = contract.GID
) -> bool:
    """Write ``dest/etc/passwd`` = the base's plus the kiln line; False (nothing written) when the
    base already has a user with ``uid``."""
    current = (base.read(PASSWD) or b"").decode("utf-8")
    if any(_uid(line) == str(uid) for line in current.splitlines()):
        return False
    if current and not current.endswith("\n"):
        current += "\n"
    path = dest / PASSWD.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(current + passwd_line(uid, gid), encoding="utf-8")
    path.chmod(0o644)
    return True


def _uid(line: str) -> str | None:
    fields = line.split(":")
    return fields[2] if len(fields) > 2 else None
