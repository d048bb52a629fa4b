"""The lock file: ``name==version`` entries with ``--hash`` lines, as ``uv pip compile`` writes them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from kiln.env.redact import has_credentials, redact
from kiln.errors import DependencyError

_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class LockEntry:
    """One pinned package and the sha256 hashes of the files allowed to install it."""

    name: str
    """Canonical name (``scikit-learn``)."""
    version: str
    hashes: frozenset[str]
    """Hex sha256 digests."""

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


def parse_lock(text: str) -> tuple[LockEntry, ...]:
    """Every entry of a hashed lock; DependencyError for a line kiln cannot install offline."""
    entries: list[LockEntry] = []
    for block in _blocks(text):
        head = block.split(" --", 1)[0].strip()
        try:
            requirement = Requirement(head)
        except InvalidRequirement as exc:
            raise DependencyError(f"lock line {redact(head)!r} is not a requirement ({exc})") from exc
        pins = [spec for spec in requirement.specifier if spec.operator == "=="]
        if requirement.url or len(pins) != 1:
            raise DependencyError(f"lock line {redact(head)!r} does not pin one version with '=='")
        hashes = frozenset(_HASH.findall(block))
        if not hashes:
            raise DependencyError(f"lock line {head!r} has no --hash: kiln needs a hash for every package")
        entries.append(LockEntry(canonicalize_name(requirement.name), pins[0].version, hashes))
    return tuple(entries)


def add_hashes(text: str, extra: dict[str, str]) -> str:
    """The lock with one more ``--hash`` for each ``{canonical name: hex}``, after that entry's last."""
    lines = text.splitlines()
    out: list[str] = []
    current: str | None = None
    for index, line in enumerate(lines):
        if line and not line[0].isspace() and not line.startswith("#"):
            current = canonicalize_name(re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0])
        out.append(line)
        last_of_entry = (
            current is not None
            and line.strip().startswith("--hash=")
            and (index + 1 == len(lines) or not lines[index + 1].lstrip().startswith("--hash="))
        )
        if last_of_entry and current in extra:
            out[-1] = line.rstrip() + " \\"
            out.append(f"    --hash=sha256:{extra[current]}")
    return "\n".join(out) + "\n"


def lock_digest(text: str) -> str:
    """``sha256:<hex>`` of the lock's bytes."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def ensure_no_credentials(text: str, what: str) -> None:
    """Refuse to write ``text`` if a URL in it carries credentials."""
    if has_credentials(text):
        raise DependencyError(
            f"{what} would contain a URL with credentials; kiln refuses to write it",
            hint="configure private indexes in pip.conf/uv.toml or PIP_*/UV_* variables, "
            "not in requirement lines",
        )


def _blocks(text: str) -> list[str]:
    """Logical lines: continuations joined, comments and blank lines dropped."""
    blocks: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line and not pending:
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            blocks.append(" ".join(pending.split()))
        pending = ""
    if pending.strip():
        blocks.append(" ".join(pending.split()))
    return blocks
