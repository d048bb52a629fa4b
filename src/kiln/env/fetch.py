"""Fetch the wheels a lock names, for the image's platform, on the host, through kiln's cache.

``pip download`` does the network part with the host's own pip configuration (pip.conf,
``PIP_*`` variables: indexes, certificates, proxies, credentials) and checks every file
against the lock's hashes; pip applies the host's constraint files itself (the lock was
made under the same files, ``kiln.env.locking``). A package that only has an sdist is built
into a wheel on the host when it is pure Python; anything else is an error naming it. The
wheelhouse ends up holding exactly one wheel per lock entry.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from kiln.env import indexes, platform
from kiln.env.cache import place, sha256_file, store_file
from kiln.env.lockfile import LockEntry
from kiln.env.spec import TargetPlatform
from kiln.env.tools import pip_command, run, tail
from kiln.env.wheelbuild import build_pure_wheel
from kiln.errors import DependencyError

_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")
_CANNOT_INSTALL = re.compile(r"Cannot install (.+?) because these package versions have conflicting")


@dataclass(frozen=True)
class FetchResult:
    """The wheels now in the wheelhouse, and where they came from."""

    wheels: tuple[Path, ...]
    from_cache: int
    extra_hashes: tuple[tuple[str, str], ...] = ()
    """``(canonical name, sha256)`` of wheels whose hash the lock lacks (built from sdists here)."""


class WheelStore:
    """The wheel cache for one target: ``wheels/<target key>/<sha256>/<file>``, ``built/<sdist sha256>/``."""

    def __init__(self, cache_dir: Path, target: TargetPlatform) -> None:
        self.target = target
        self.wheels = cache_dir / "wheels" / platform.target_key(target)
        self.built = cache_dir / "built"
        self.scratch = cache_dir / "tmp"

    def find(self, entry: LockEntry) -> Path | None:
        """The cached wheel for ``entry`` that the target prefers, if any."""
        candidates: list[tuple[int, str, Path]] = []
        for digest in entry.hashes:
            for base in (self.wheels / digest, self.built / digest):
                for wheel in base.glob("*.whl") if base.is_dir() else ():
                    rank = self.rank(wheel)
                    if rank is not None and _wheel_name(wheel) == entry.name:
                        candidates.append((rank, wheel.name, wheel))
        return min(candidates)[2] if candidates else None

    def rank(self, wheel: Path) -> int | None:
        _name, _version, _build, tags = parse_wheel_filename(wheel.name)
        return platform.tag_rank(self.target, tags)

    def digest(self, wheel: Path) -> str:
        """sha256 of a stored wheel (downloaded wheels are filed under theirs)."""
        if wheel.parent.parent == self.wheels:
            return wheel.parent.name
        return sha256_file(wheel)

    def add_wheel(self, wheel: Path, *, move: bool = False) -> Path:
        return store_file(wheel, self.wheels / sha256_file(wheel), move=move)


def fetch_wheels(
    entries: Sequence[LockEntry],
    *,
    target: TargetPlatform,
    dest: Path,
    cache_dir: Path,
    local_wheels: Sequence[Path] = (),
) -> FetchResult:
    """Fill ``dest`` (emptied first) with one wheel per entry; download only what the cache lacks."""
    store = WheelStore(cache_dir, target)
    for wheel in local_wheels:
        store.add_wheel(wheel)
    chosen = {entry.name: store.find(entry) for entry in entries}
    missing = [entry for entry in entries if chosen[entry.name] is None]
    from_cache = len(entries) - len(missing)
    if missing:
        _download(missing, store)
        for entry in missing:
            chosen[entry.name] = store.find(entry)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    placed: list[Path] = []
    extra: list[tuple[str, str]] = []
    for entry in entries:
        source = chosen[entry.name]
        if source is None:
            raise DependencyError(
                f"no wheel of {entry.pin} for {_describe(target)} was fetched although pip reported success"
            )
        place(source, dest / source.name)
        placed.append(dest / source.name)
        digest = store.digest(source)
        if digest not in entry.hashes:
            extra.append((entry.name, digest))
    return FetchResult(tuple(placed), from_cache, tuple(extra))


def _download(entries: Sequence[LockEntry], store: WheelStore) -> None:
    """Download ``entries`` into the store; build pure wheels from sdists that have no wheel."""
    store.scratch.mkdir(parents=True, exist_ok=True)
    by_hash = {digest: entry for entry in entries for digest in entry.hashes}
    with tempfile.TemporaryDirectory(prefix="download-", dir=store.scratch) as tmp:
        work = Path(tmp)
        lock = work / "missing.lock"
        lock.write_text(
            "".join(
                entry.pin + "".join(f" --hash=sha256:{digest}" for digest in sorted(entry.hashes)) + "\n"
                for entry in entries
            ),
            encoding="utf-8",
        )
        files = work / "files"
        command = [
            *pip_command(),
            "download",
            "--no-deps",
            "--prefer-binary",
            "--require-hashes",
            "--python-version",
            store.target.python_version,
            "--implementation",
            "cp",
            *(arg for tag in platform.platform_tags(store.target) for arg in ("--platform", tag)),
            "--dest",
            str(files),
            "--requirement",
            str(lock),
            "--progress-bar",
            "off",
            "--no-input",
            "--quiet",
        ]
        result = run(command, what="pip download")
        if result.returncode != 0:
            raise _download_error(result.stderr or result.stdout, store.target)
        for path in sorted(files.iterdir()):
            entry = by_hash.get(sha256_file(path))
            if entry is None:
                raise DependencyError(f"pip downloaded {path.name!r}, which matches no hash in the lock")
            if path.name.endswith(".whl"):
                if store.rank(path) is None:
                    raise DependencyError(
                        f"pip chose {path.name!r} for {entry.pin}, "
                        f"which cannot run on {_describe(store.target)}"
                    )
                store.add_wheel(path, move=True)
                continue
            _check_sdist_name(path, entry)
            sdist_digest = sha256_file(path)
            wheel = build_pure_wheel(path, work / "built", package=entry.pin, target=_describe(store.target))
            store_file(wheel, store.built / sdist_digest, move=True)


def _download_error(output: str, target: TargetPlatform) -> DependencyError:
    conflict = _constraint_conflict(output)
    if conflict is not None:
        return conflict
    match = _NOT_FOUND.search(output)
    if match:
        return DependencyError(
            f"no installable file of {match.group(1)} for {_describe(target)} on the configured indexes",
            hint=tail(output),
        )
    if "DO NOT MATCH THE HASHES" in output:
        return DependencyError(
            "a file pip downloaded does not match the hash in the lock (the index serves different bytes "
            "than when the lock was made)",
            hint=tail(output),
        )
    return DependencyError(f"fetching wheels for {_describe(target)} with pip failed", hint=tail(output))


def _constraint_conflict(output: str) -> DependencyError | None:
    """pip refusing locked pins because a host constraint excludes them (a lock made under other
    settings, e.g. a cached or model-supplied lock): the pins and the constraint lines that exclude them."""
    match = _CANNOT_INSTALL.search(output)
    if match is None:
        return None
    pins = [pin for text in re.split(r",| and ", match.group(1)) if (pin := _requirement(text))]
    lines = indexes.constraint_lines(indexes.pip_indexes().constraints)
    excluding = [
        (pin, line)
        for pin in pins
        for line in lines
        if line.name == canonicalize_name(pin.name)
        and not any(Requirement(line.requirement).specifier.contains(v) for v in _versions(pin))
    ]
    if not excluding:
        return None
    what = "; ".join(
        f"the host's pip constraint {line.requirement!r} ({line.origin}) excludes the lock's {str(pin)!r}"
        for pin, line in excluding
    )
    return DependencyError(
        f"{what}, so pip will not download it",
        hint="pip applies its constraint files (pip.conf 'constraint' or PIP_CONSTRAINT; 'pip config list' "
        "shows which) to every download: relax the constraint, or lock again under it",
    )


def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text.strip())
    except InvalidRequirement:
        return None


def _versions(requirement: Requirement) -> list[str]:
    return [spec.version for spec in requirement.specifier if spec.operator == "=="]


def _check_sdist_name(path: Path, entry: LockEntry) -> None:
    try:
        name, _version = parse_sdist_filename(path.name)
    except InvalidSdistFilename as exc:
        raise DependencyError(f"pip downloaded {path.name!r} for {entry.pin}: not a wheel or sdist") from exc
    if canonicalize_name(name) != entry.name:
        raise DependencyError(f"pip downloaded {path.name!r} for {entry.pin}: the names differ")


def _wheel_name(wheel: Path) -> str:
    try:
        return canonicalize_name(parse_wheel_filename(wheel.name)[0])
    except InvalidWheelFilename:
        return ""


def _describe(target: TargetPlatform) -> str:
    return f"CPython {target.python_version} {platform.uv_python_platform(target)}"
