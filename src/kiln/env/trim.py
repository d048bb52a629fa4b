"""Leave out of the lock the packages MLflow requires but serving never imports.

mlflow-skinny requires GitPython (to record the git commit of a training run) and, through
databricks-sdk and google-auth, cryptography (for service-account signing). Loading and
predicting a model imports neither: ``import mlflow.pyfunc``, ``load_model`` and ``predict``
run with them absent (checked by the tests against a real image). Together with their own
dependencies they are about 22 MB of the image.

A package is left out only when nothing but MLflow needs it: if the model's requirements (or
kiln's runtime requirements) reach it by any path that does not go through MLflow, it stays.
The graph comes from uv's ``# via`` annotations in the lock. The lock then lists exactly what
the image holds, with a comment naming what was left out; the image installs it with
``--no-deps``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.utils import canonicalize_name

SERVING_NEVER_IMPORTS: frozenset[str] = frozenset(
    {"gitpython", "gitdb", "smmap", "cryptography", "cffi", "pycparser"}
)
"""Required (directly or not) by mlflow-skinny; imported by none of serving's code paths."""

MLFLOW: frozenset[str] = frozenset({"mlflow", "mlflow-skinny"})

_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")
_VIA_ONE = re.compile(r"^\s+# via (.+)$")
_VIA_MORE = re.compile(r"^\s+#   (.+)$")


@dataclass(frozen=True)
class Trimmed:
    """The lock without the left-out packages, and their names (sorted)."""

    text: str
    left_out: tuple[str, ...]


def trim_lock(text: str) -> Trimmed:
    """``text`` (a lock as ``uv pip compile`` annotates it) without the packages of
    SERVING_NEVER_IMPORTS that only MLflow needs."""
    parents = _parents(text)
    needed = _reachable_without_mlflow(parents)
    left_out = tuple(sorted(name for name in parents if name in SERVING_NEVER_IMPORTS and name not in needed))
    if not left_out:
        return Trimmed(text, ())
    kept = _drop_entries(text, frozenset(left_out))
    note = (
        f"# Left out: {', '.join(left_out)} (MLflow requires them; serving never imports them; "
        "name one in the model's requirements to keep it).\n"
    )
    return Trimmed(note + kept, left_out)


def mlflow_only(text: str) -> frozenset[str]:
    """The lock's packages that only MLflow needs, MLflow's own included: what no requirements
    file (the model's, kiln's runtime's) reaches without passing through MLflow. A package whose
    lock entry says nothing of what requires it (no ``# via``) is not among them."""
    parents = _parents(text)
    needed = _reachable_without_mlflow(parents)
    return frozenset(name for name, via in parents.items() if name in MLFLOW or (via and name not in needed))


def _parents(text: str) -> dict[str, frozenset[str]]:
    """Each entry's canonical name -> what requires it (canonical names, or ``-r file.in``)."""
    found: dict[str, set[str]] = {}
    current: str | None = None
    in_via = False
    for line in text.splitlines():
        entry = _ENTRY.match(line)
        if entry:
            current, in_via = canonicalize_name(entry.group(1)), False
            found[current] = set()
            continue
        if current is None:
            continue
        one = _VIA_ONE.match(line)
        if one:
            found[current].add(_source(one.group(1)))
            continue
        if line.strip() == "# via":
            in_via = True
            continue
        more = _VIA_MORE.match(line)
        if in_via and more:
            found[current].add(_source(more.group(1)))
    return {name: frozenset(via) for name, via in found.items()}


def _source(text: str) -> str:
    text = text.strip()
    return text if text.startswith(("-r", "-c")) else canonicalize_name(text.split()[0])


def _reachable_without_mlflow(parents: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """Every package a requirements file reaches without passing through MLflow."""
    children: dict[str, set[str]] = {}
    roots: list[str] = []
    for name, via in parents.items():
        for source in via:
            if source.startswith("-r"):
                roots.append(name)
            else:
                children.setdefault(source, set()).add(name)
    seen: set[str] = set()
    stack = [name for name in roots if name not in MLFLOW]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(child for child in children.get(name, ()) if child not in MLFLOW)
    return frozenset(seen)


def _drop_entries(text: str, names: frozenset[str]) -> str:
    """The lock without the entries (their line, hashes and annotations) named in ``names``."""
    out: list[str] = []
    dropping = False
    for line in text.splitlines():
        entry = _ENTRY.match(line)
        if entry:
            dropping = canonicalize_name(entry.group(1)) in names
        elif line and not line[0].isspace():
            dropping = False  # a top-level comment or option line ends an entry
        if not dropping:
            out.append(line)
    return "\n".join(out) + "\n"
