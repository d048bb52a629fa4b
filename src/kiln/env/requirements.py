"""Read pip requirements files safely: parsed with ``packaging``, includes kept inside one directory.

Nothing here runs a shell or pip. ``-r``/``-c`` includes and local wheel paths must
stay inside ``root`` (the model directory, or the directory of a ``--requirements``
file): ``..`` and absolute escapes are refused. Index options (``--index-url`` and
friends) are not followed: kiln resolves against the host's own pip/uv configuration,
so they are reported (with credentials removed) as ignored.

Runtime-safe: imported inside images by ``kiln.env.check``; standard library and
``packaging`` only, Python 3.9+.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from kiln.env.redact import redact
from kiln.errors import DependencyError

_COMMENT = re.compile(r"(^|\s)#.*$")
# Per-requirement options after the requirement itself (``pkg==1 --hash=sha256:...``).
_TRAILING_OPTIONS = re.compile(r"\s+(?=--?[A-Za-z])")
_INCLUDE_REQUIREMENTS = ("-r", "--requirement")
_INCLUDE_CONSTRAINTS = ("-c", "--constraint")
_EDITABLE = ("-e", "--editable")


@dataclass(frozen=True)
class RequirementLine:
    """One requirement and where it came from (``requirements.txt:3``)."""

    requirement: Requirement
    origin: str
    local_wheel: Path | None = None
    """For a wheel file named by path inside ``root``: that file (the requirement pins its version)."""

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    def __str__(self) -> str:
        return str(self.requirement)


@dataclass(frozen=True)
class ParsedRequirements:
    """Requirements, constraints and ignored options, in file order."""

    requirements: tuple[RequirementLine, ...] = ()
    constraints: tuple[RequirementLine, ...] = ()
    ignored_options: tuple[str, ...] = ()
    """Options kiln does not follow, as written but with credentials removed."""

    def __add__(self, other: ParsedRequirements) -> ParsedRequirements:
        return ParsedRequirements(
            self.requirements + other.requirements,
            self.constraints + other.constraints,
            self.ignored_options + other.ignored_options,
        )


def read_requirements_file(path: Path, *, root: Path | None = None) -> ParsedRequirements:
    """Parse ``path``; its includes must stay inside ``root`` (default: the file's directory)."""
    path = Path(path)
    if not path.is_file():
        raise DependencyError(f"requirements file {str(path)!r} does not exist or is not a file")
    parser = _Parser(Path(root) if root is not None else path.parent)
    return parser.read_file(path.resolve(), constraints=False, origin=str(path))


def parse_requirement_lines(lines: Iterable[str], *, origin: str, root: Path) -> ParsedRequirements:
    """Parse requirement lines that are not in a file (python_env.yaml, conda.yaml's pip section).

    Includes are resolved relative to ``root`` and must stay inside it.
    """
    parser = _Parser(root)
    return parser.parse(list(lines), base_dir=parser.root, origin=origin, constraints=False)


class _Parser:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._stack: list[Path] = []

    def read_file(self, path: Path, *, constraints: bool, origin: str) -> ParsedRequirements:
        if path in self._stack:
            chain = " -> ".join(str(p) for p in [*self._stack, path])
            raise DependencyError(f"requirements files include each other in a loop: {chain}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DependencyError(f"requirements file {str(path)!r} is not UTF-8 text: {exc}") from exc
        except OSError as exc:
            raise DependencyError(f"cannot read requirements file {str(path)!r}: {exc}") from exc
        self._stack.append(path)
        try:
            return self.parse(text.splitlines(), base_dir=path.parent, origin=origin, constraints=constraints)
        finally:
            self._stack.pop()

    def parse(
        self, lines: list[str], *, base_dir: Path, origin: str, constraints: bool
    ) -> ParsedRequirements:
        result = ParsedRequirements()
        for number, line in _logical_lines(lines):
            where = f"{origin}:{number}"
            if line.startswith("-"):
                result = result + self._option(line, base_dir=base_dir, where=where, constraints=constraints)
                continue
            item = self._requirement(line, base_dir=base_dir, where=where)
            if constraints:
                result = result + ParsedRequirements(constraints=(item,))
            else:
                result = result + ParsedRequirements(requirements=(item,))
        return result

    def _option(self, line: str, *, base_dir: Path, where: str, constraints: bool) -> ParsedRequirements:
        name, value = _split_option(line)
        if name in _INCLUDE_REQUIREMENTS or name in _INCLUDE_CONSTRAINTS:
            if not value:
                raise DependencyError(f"{where}: {name!r} needs a file name")
            target = self._inside_root(value, base_dir=base_dir, where=where, what=f"{name} {value}")
            if not target.is_file():
                raise DependencyError(f"{where}: {name} {value!r}: no such file {str(target)!r}")
            nested_constraints = constraints or name in _INCLUDE_CONSTRAINTS
            return self.read_file(target, constraints=nested_constraints, origin=self._label(target))
        if name in _EDITABLE:
            raise DependencyError(
                f"{where}: editable requirement {redact(line)!r} cannot be installed into an image",
                hint="build a wheel of that project and list it by version (or by path inside the model)",
            )
        return ParsedRequirements(ignored_options=(f"{where}: {redact(line)}",))

    def _requirement(self, line: str, *, base_dir: Path, where: str) -> RequirementLine:
        text = _TRAILING_OPTIONS.split(line, maxsplit=1)[0].strip()
        if _looks_like_path(text):
            return self._wheel_path(text, marker="", base_dir=base_dir, where=where)
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise DependencyError(
                f"{where}: {redact(text)!r} is not a valid requirement ({exc})",
                hint="expected a PEP 508 requirement such as 'scikit-learn==1.5.2'",
            ) from exc
        if requirement.url is None:
            return RequirementLine(requirement, where)
        marker = f"; {requirement.marker}" if requirement.marker else ""
        url = requirement.url
        if url.startswith("file:") and urlparse(url).path.endswith(".whl"):
            return self._wheel_path(url, marker=marker, base_dir=base_dir, where=where)
        raise DependencyError(
            f"{where}: direct URL requirement {redact(text)!r} is not supported",
            hint="publish the package to an index the host can reach, or put its wheel "
            "inside the model directory and name it by relative path",
        )

    def _wheel_path(self, ref: str, *, marker: str, base_dir: Path, where: str) -> RequirementLine:
        local = unquote(urlparse(ref).path) if ref.startswith("file:") else ref
        if not local.endswith(".whl"):
            raise DependencyError(
                f"{where}: {redact(ref)!r} is a path but not a wheel file",
                hint="only wheels (.whl) can be named by path; source trees cannot be installed offline",
            )
        if ref.startswith("file:") and os.path.isabs(local):
            local = os.path.relpath(local, base_dir)
        path = self._inside_root(local, base_dir=base_dir, where=where, what=ref)
        if not path.is_file():
            raise DependencyError(f"{where}: wheel {ref!r} not found (looked for {str(path)!r})")
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename as exc:
            raise DependencyError(f"{where}: {path.name!r} is not a valid wheel file name ({exc})") from exc
        return RequirementLine(Requirement(f"{name}=={version}{marker}"), where, local_wheel=path)

    def _inside_root(self, ref: str, *, base_dir: Path, where: str, what: str) -> Path:
        if os.path.isabs(ref) or ref.startswith("~"):
            raise DependencyError(
                f"{where}: {what!r} names an absolute path; includes and wheel paths must be "
                f"relative paths inside {str(self.root)!r}"
            )
        target = (base_dir / ref).resolve()
        if target != self.root and self.root not in target.parents:
            raise DependencyError(
                f"{where}: {what!r} resolves to {str(target)!r}, outside {str(self.root)!r}; "
                "includes and wheel paths must stay inside that directory"
            )
        return target

    def _label(self, path: Path) -> str:
        return str(path.relative_to(self.root))


def _logical_lines(lines: list[str]) -> Iterator[tuple[int, str]]:
    """``(first line number, text)`` with continuations joined and comments removed."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=1):
        if not pending:
            start = number
        line = raw.rstrip("\r\n")
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        text = _COMMENT.sub("", " ".join(pending)).strip()
        pending = []
        if text:
            yield start, text
    if pending:
        text = _COMMENT.sub("", " ".join(pending)).strip()
        if text:
            yield start, text


def _split_option(line: str) -> tuple[str, str]:
    if line.startswith("--"):
        head, _, rest = line.partition(" ")
        if "=" in head:
            name, _, value = head.partition("=")
            return name, (value + " " + rest).strip()
        return head, rest.strip()
    return line[:2], line[2:].strip()


def _looks_like_path(text: str) -> bool:
    if text.startswith(("./", "../", "/", "~", "file:")):
        return True
    return text.endswith(".whl") and " @ " not in text and "@" not in text.split(";")[0]
