"""The host's pip index and constraint settings, handed to uv so that the lock is one pip will fetch.

kiln resolves with ``uv pip compile`` and fetches with ``pip download``. uv reads only its
own settings (``UV_*``, ``uv.toml``); a user whose private index or certificate is set up
for pip (``pip.conf``, ``PIP_*``) would otherwise get a lock that pip cannot fetch, or none.
When uv has no index settings of its own, pip's effective ones are passed to it. pip's
constraint files (``constraint`` in pip.conf, ``PIP_CONSTRAINT``) are passed always: pip
applies them to the fetch whatever uv was told. Values travel as process arguments and
environment only; nothing is written to the build context.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from kiln.env.tools import pip_command

# uv settings that mean the user configured uv's indexes themselves.
UV_INDEX_SETTINGS = (
    "UV_INDEX",
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_CONFIG_FILE",
)
# pip reads sections in this order; later ones win (":env:" is PIP_* variables).
_SECTIONS = ("global", "download", ":env:")
_COMMENT = re.compile(r"(^|\s)#.*$")
_INCLUDE = re.compile(r"^(?:--constraint|--requirement|-c|-r)[=\s]*(\S+)$")


@dataclass(frozen=True)
class PipIndexes:
    """pip's effective index configuration for ``pip download``."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    cert: str | None = None
    constraints: tuple[str, ...] = ()
    """pip's constraint files (paths made absolute, or URLs), in pip's order."""

    def uv_constraint_args(self) -> list[str]:
        """``--constraint FILE`` for each of pip's constraint files: the lock must obey what pip will."""
        return [arg for path in self.constraints for arg in ("--constraint", path)]

    def uv_args(self) -> list[str]:
        """Arguments that make ``uv pip compile`` look where pip will look."""
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        if self.extra_index_urls or self.find_links:
            # pip picks the best version across all its indexes; uv's default stops at the first.
            args += ["--index-strategy", "unsafe-best-match"]
        return args

    def uv_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Environment additions: pip's ``cert`` as uv's ``SSL_CERT_FILE`` unless one is set."""
        if self.cert and "SSL_CERT_FILE" not in environ:
            return {"SSL_CERT_FILE": self.cert}
        return {}


def uv_configured(environ: Mapping[str, str]) -> bool:
    """Whether the user set up uv's indexes (then kiln leaves uv to its own settings)."""
    if any(name in environ for name in UV_INDEX_SETTINGS):
        return True
    xdg = environ.get("XDG_CONFIG_HOME")
    user = Path(xdg) if xdg else Path.home() / ".config"
    return any(path.is_file() for path in (user / "uv" / "uv.toml", Path("/etc/uv/uv.toml")))


def pip_indexes(environ: Mapping[str, str] | None = None) -> PipIndexes:
    """pip's effective settings, as ``pip config list`` reports them (files and PIP_* variables)."""
    env = dict(os.environ if environ is None else environ)
    try:
        result = subprocess.run(
            [*pip_command(), "config", "list"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return PipIndexes()
    if result.returncode != 0:
        return PipIndexes()
    return from_config(parse_config_list(result.stdout))


def parse_config_list(text: str) -> dict[str, str]:
    """``{option: value}`` from ``pip config list`` lines such as ``global.index-url='https://…'``."""
    by_section: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        section, dot, option = key.strip().rpartition(".")
        if not dot:
            continue
        value = raw.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        by_section.setdefault(section, {})[option] = value
    merged: dict[str, str] = {}
    for section in _SECTIONS:
        merged.update(by_section.get(section, {}))
    return merged


def from_config(options: Mapping[str, str]) -> PipIndexes:
    def many(name: str) -> tuple[str, ...]:
        return tuple(options.get(name, "").split())

    return PipIndexes(
        index_url=options.get("index-url") or None,
        extra_index_urls=many("extra-index-url"),
        find_links=many("find-links"),
        cert=options.get("cert") or None,
        constraints=tuple(_absolute(path) for path in many("constraint")),
    )


@dataclass(frozen=True)
class ConstraintLine:
    """One requirement line of a host constraint file, and where it is (``/etc/pip/c.txt:2``)."""

    requirement: str
    name: str
    """Canonical name of the constrained package."""
    origin: str


def constraint_lines(files: tuple[str, ...]) -> tuple[ConstraintLine, ...]:
    """The requirement lines of ``files`` and the files they include (URLs and unreadable files skipped)."""
    seen: set[Path] = set()
    return tuple(line for name in files if not _is_url(name) for line in _read(Path(name), seen))


def _read(path: Path, seen: set[Path]) -> Iterator[ConstraintLine]:
    if path in seen:
        return
    seen.add(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    for number, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.sub("", raw).strip()
        include = _INCLUDE.match(line)
        if include and not _is_url(include.group(1)):
            yield from _read(path.parent / include.group(1), seen)
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line.split(" --", 1)[0].strip())
        except InvalidRequirement:
            continue
        yield ConstraintLine(str(requirement), canonicalize_name(requirement.name), f"{path}:{number}")


def _absolute(path: str) -> str:
    # uv runs in a scratch directory; pip read relative paths against kiln's working directory.
    return path if _is_url(path) else os.path.abspath(path)


def _is_url(text: str) -> bool:
    return "://" in text
