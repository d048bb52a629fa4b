"""Resolve requirements for the image's Python and platform with ``uv pip compile``; cache the lock.

The model's requirements and kiln's runtime requirements are resolved together, under the
host's pip constraint files (pip applies them to the fetch), so a conflict between any of
them shows at build time, naming both sides. The lock pins every package with hashes and
names no index: indexes and credentials stay in the host's configuration. The finished
lock is cached by its inputs, so the same inputs always give the same lock bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from kiln.env import indexes, platform
from kiln.env.cache import atomic_write, sha256_file
from kiln.env.lockfile import ensure_no_credentials
from kiln.env.redact import redact
from kiln.env.spec import TargetPlatform
from kiln.env.tools import run, tail, uv_binary
from kiln.errors import DependencyError

_LOCK_FORMAT = 1
# Settings that change what uv resolves; their values (credentials removed) key the cache.
_UV_SETTINGS = (
    *indexes.UV_INDEX_SETTINGS,
    "UV_INDEX_STRATEGY",
    "UV_PRERELEASE",
    "UV_RESOLUTION",
    "UV_EXCLUDE_NEWER",
    "UV_CONSTRAINT",
    "UV_OVERRIDE",
    "UV_TORCH_BACKEND",
    "UV_NO_CONFIG",
)
_YOU_REQUIRE = re.compile(r"you require (.+?)(?:, we can conclude|, and |\.(?:\s|$)|$)", re.MULTILINE)
_NO_VERSION = re.compile(
    r"there is no version of (\S+?)(?:,| and |\s|$)|(\S+) was not found in the package registry"
)

_NEEDS_PYTHON = re.compile(r"(\S+) depends on Python([<>=!~][^\s,]+)")
_HOST_CONSTRAINT_VIA = re.compile(r"^(\s*#\s+(?:via )?-c )(.+)$", re.MULTILINE)
_CONSTRAINTS_FILE = "constraints.txt"
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]|[A-Za-z0-9]")


class UnavailableError(DependencyError):
    """A requirement names a version (or package) the configured indexes do not have."""

    def __init__(self, message: str, *, names: frozenset[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.names = names
        """Canonical names of the packages uv found no fitting version of."""


@dataclass(frozen=True)
class LockRequest:
    """What to resolve, for which target."""

    target: TargetPlatform
    requirements: tuple[str, ...]
    """The environment's own top-level requirements (the model's, or --requirements files')."""
    runtime: tuple[str, ...]
    """kiln's runtime requirements."""
    constraints: tuple[str, ...] = ()
    local_wheels: tuple[Path, ...] = ()
    """Wheel files offered to the resolver next to the index (model wheels, --mlflow-home)."""
    label: str = "model"
    """Names the requirements in the lock's ``# via -r <label>.in`` annotations."""


def compile_lock(request: LockRequest, *, cache_dir: Path) -> tuple[str, bool]:
    """The lock text for ``request`` and whether it came from the cache."""
    cached = cache_dir / "locks" / f"{cache_key(request)}.lock"
    if cached.is_file():
        return cached.read_text(encoding="utf-8"), True
    text = _run_uv(request)
    ensure_no_credentials(text, "the lock")
    atomic_write(cached, text.encode("utf-8"))
    return text, False


def cache_key(request: LockRequest) -> str:
    """sha256 over everything that decides the resolution (credentials removed)."""
    inputs = {
        "format": _LOCK_FORMAT,
        "python": request.target.python_version,
        "platform": platform.uv_python_platform(request.target),
        "requirements": list(request.requirements),
        "runtime": list(request.runtime),
        "constraints": list(request.constraints),
        "label": request.label,
        "local_wheels": sorted(sha256_file(path) for path in request.local_wheels),
        "uv_settings": {name: redact(os.environ[name]) for name in _UV_SETTINGS if name in os.environ},
        "uv_config": _uv_config_digest(),
        "pip_indexes": [redact(arg) for arg in _pip_index_args()],
        "pip_constraints": [[redact(name), _digest(name)] for name in _pip_indexes().constraints],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode("utf-8")).hexdigest()


def _run_uv(request: LockRequest) -> str:
    target = request.target
    with tempfile.TemporaryDirectory(prefix="kiln-lock-") as tmp:
        work = Path(tmp)
        args: list[str] = []
        inputs = ((f"{request.label}.in", request.requirements), ("kiln-runtime.in", request.runtime))
        for name, lines in inputs:
            if lines:
                (work / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
                args.append(name)
        if request.constraints:
            (work / _CONSTRAINTS_FILE).write_text("\n".join(request.constraints) + "\n", encoding="utf-8")
            args += ["--constraint", _CONSTRAINTS_FILE]
        if request.local_wheels:
            (work / "wheels").mkdir()
            for wheel in request.local_wheels:
                shutil.copyfile(wheel, work / "wheels" / wheel.name)
            args += ["--find-links", "wheels"]
        command = [
            uv_binary(),
            "pip",
            "compile",
            *args,
            "--generate-hashes",
            "--no-header",
            "--python-version",
            target.python_version,
            "--python-platform",
            platform.uv_python_platform(target),
            "--color",
            "never",
            "--no-progress",
            # Only the host's interpreters build sdists' metadata; never fetch a Python for that.
            "--no-python-downloads",
            *_pip_index_args(),
            *_host_constraint_args(),
        ]
        env = dict(os.environ)
        if not indexes.uv_configured(os.environ):
            env.update(_pip_indexes().uv_env(os.environ))
        result = run(command, what="uv pip compile", cwd=work, env=env)
    if result.returncode != 0:
        raise explain_failure(result.stderr, request, indexes.constraint_lines(_pip_indexes().constraints))
    text = _HOST_CONSTRAINT_VIA.sub(_neutral_via, result.stdout)
    return text if text.endswith("\n") else text + "\n"


def _neutral_via(match: re.Match[str]) -> str:
    """``# via -c /etc/xdg/pip/constraints.txt`` -> ``# via -c (host pip constraint) constraints.txt``:
    the lock goes into the image and its bytes should not depend on where the host keeps the file
    (nor carry a URL's credentials)."""
    name = match.group(2).strip()
    if name == _CONSTRAINTS_FILE:
        return match.group(0)
    return f"{match.group(1)}(host pip constraint) {name.rstrip('/').rpartition('/')[2]}"


def explain_failure(
    stderr: str, request: LockRequest, host_constraints: Sequence[indexes.ConstraintLine] = ()
) -> DependencyError:
    """A DependencyError naming the requirements on each side of a conflict, from uv's explanation.

    ``host_constraints`` are the lines of the host's pip constraint files the lock ran under."""
    target = f"Python {request.target.python_version} {request.target.os_arch}"
    if "No solution found" not in stderr:
        return DependencyError(f"resolving the requirements for {target} failed", hint=tail(stderr))
    explanation = _explanation(stderr)
    names = _required_names(explanation)
    ours = [line for line in request.requirements if _name(line) in names]
    kiln = [line for line in request.runtime if _name(line) in names]
    hint = "uv says: " + explanation
    constrained = _constraints_in(explanation, host_constraints)
    if constrained:
        return _constraint_conflict(request, ours or kiln, constrained, target, hint)
    if ours and kiln:
        message = (
            f"{_whose(request.label)} requirement {_join(ours)} conflicts with kiln's runtime "
            f"requirement {_join(kiln)} (resolving for {target})"
        )
        hint += f"\n  relax the pin in {_whose(request.label)} requirements, or use a kiln whose runtime fits"
        return DependencyError(message, hint=hint)
    needs_python = _NEEDS_PYTHON.findall(explanation)
    if needs_python:
        what = ", ".join(f"{requirement!r} needs Python{spec}" for requirement, spec in needs_python)
        return DependencyError(
            f"{what}, but the image runs Python {request.target.python_version}",
            hint=hint + "\n  build for a newer Python (a newer base image) or pin an older version",
        )
    unavailable = frozenset(
        _name(match.group(1) or match.group(2)) for match in _NO_VERSION.finditer(explanation)
    ) - {""}
    if unavailable:
        missing = [line for line in (*request.requirements, *request.runtime) if _name(line) in unavailable]
        what = _join(missing) if missing else ", ".join(sorted(unavailable))
        return UnavailableError(
            f"no version of {what} is available for {target} on the configured indexes",
            names=unavailable,
            hint=hint,
        )
    involved = ours or kiln
    what = _join(involved) if involved else "the requirements"
    return DependencyError(
        f"{_whose(request.label)} requirements cannot be resolved for {target}: {what}", hint=hint
    )


def _constraint_conflict(
    request: LockRequest,
    involved: Sequence[str],
    constrained: Sequence[indexes.ConstraintLine],
    target: str,
    hint: str,
) -> DependencyError:
    ours = any(line in request.requirements for line in involved)
    whose = _whose(request.label) if ours else "kiln's runtime"
    what = f"{whose} requirement {_join(involved)}" if involved else f"{_whose(request.label)} requirements"
    constraints = ", ".join(f"{line.requirement!r} ({line.origin})" for line in constrained)
    files = sorted({line.origin.rpartition(":")[0] for line in constrained})
    return DependencyError(
        f"{what} conflicts with the host's pip constraint {constraints} (resolving for {target})",
        hint=hint
        + f"\n  pip applies {', '.join(files)} to every download (pip.conf 'constraint' or PIP_CONSTRAINT; "
        "'pip config list' shows which): relax the constraint there, or the model's pin",
    )


def _constraints_in(
    explanation: str, lines: Sequence[indexes.ConstraintLine]
) -> list[indexes.ConstraintLine]:
    """The host constraint lines whose package and bound uv's explanation names."""
    mentioned = {canonicalize_name(token) for token in _TOKEN.findall(explanation)}
    compact = explanation.replace(" ", "")
    return [
        line
        for line in lines
        if line.name in mentioned
        and any(str(clause) in compact for clause in Requirement(line.requirement).specifier)
    ]


def _explanation(stderr: str) -> str:
    """uv's reasoning only: no warnings, no hints about uv's own flags."""
    lines = []
    keep = False
    for raw in stderr.splitlines():
        line = raw.strip()
        if line.startswith("error: No solution found"):
            keep = True
            continue
        if line.startswith(("hint:", "warning:")):
            keep = False
        if not keep or not line:
            continue
        for prefix in ("cause:", "Caused by:", "\u2570\u2500\u25b6", "\u00d7"):
            line = line.removeprefix(prefix).strip()
        lines.append(line)
    return redact(" ".join(lines))


def _required_names(explanation: str) -> set[str]:
    names: set[str] = set()
    for match in _YOU_REQUIRE.finditer(explanation):
        for part in match.group(1).split(" and "):
            name = _name(part)
            if name:
                names.add(name)
    return names


def _name(text: str) -> str:
    try:
        return canonicalize_name(Requirement(text.strip()).name)
    except InvalidRequirement:
        return ""


def _whose(label: str) -> str:
    return {"model": "the model's", "requirements": "the requirements files'"}.get(label, f"the {label}'s")


def _join(lines: Sequence[str]) -> str:
    return ", ".join(repr(line) for line in lines)


def _pip_indexes() -> indexes.PipIndexes:
    # Asked once per distinct PIP_* environment: the cache key and the resolve both need it.
    return _pip_indexes_for(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PIP_"))))


@functools.lru_cache(maxsize=8)
def _pip_indexes_for(pip_environment: tuple[tuple[str, str], ...]) -> indexes.PipIndexes:
    return indexes.pip_indexes()


def _pip_index_args() -> list[str]:
    """pip's index settings for uv, unless the user configured uv's own (see kiln.env.indexes)."""
    if indexes.uv_configured(os.environ):
        return []
    return _pip_indexes().uv_args()


def _host_constraint_args() -> list[str]:
    """pip's constraint files, always: pip applies them to the fetch whether or not uv has its own
    index settings. A file that is gone is an error here rather than a puzzle from uv."""
    files = _pip_indexes().constraints
    for name in files:
        if "://" not in name and not Path(name).is_file():
            raise DependencyError(
                f"the host's pip constraint file {name!r} does not exist",
                hint="pip.conf 'constraint' or PIP_CONSTRAINT names it ('pip config list' shows which); "
                "create the file or remove the setting",
            )
    return _pip_indexes().uv_constraint_args()


def _digest(name: str) -> str | None:
    try:
        return sha256_file(Path(name)) if "://" not in name else None
    except OSError:
        return None


def _uv_config_digest() -> str:
    digest = hashlib.sha256()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    user = Path(xdg) if xdg else Path.home() / ".config"
    for path in (user / "uv" / "uv.toml", Path("/etc/uv/uv.toml")):
        if path.is_file():
            digest.update(redact(path.read_text(encoding="utf-8", errors="replace")).encode("utf-8"))
    return digest.hexdigest()
