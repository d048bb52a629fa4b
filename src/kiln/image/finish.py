"""Finish an installed environment the same way in both backends: stripped libraries in, bytecode compiled.

``python finish.py --site-packages DIR [--shown-as PATH] [--overlay DIR] [--start-only DIST ...]
[--probe MODULE ...]``

Standard library only and Python 3.8 syntax: the Docker backend copies this file into the build
context and runs it in the env stage with the image's own interpreter, after the installer ran
with ``--no-compile``; the OCI backend calls it with a host interpreter of the image's ``X.Y``
over the staged layer. In order:

- ``--overlay``: the wheels' shared libraries without their debug sections, made on the host
  (``kiln.image.debuginfo``): a ``manifest.json`` of ``[path, sha256 of the original, file]``.
  An installed file is replaced only when its sha256 is the original's, so a wheel the
  environment does not hold changes nothing.
- *unchecked-hash* pycs next to the ``.py`` files each distribution's RECORD lists: no source
  mtime in them, never re-validated in an image that cannot change. Each distribution is
  compiled in a fresh process with ``PYTHONHASHSEED=0`` (marshal's output depends on what the
  process compiled before), so the same wheels give the same pycs.
- no column tables (``PYTHONNODEBUGRANGES``, Python 3.11 and later): about 7% smaller pycs;
  tracebacks only lose their ``^^^^`` markers.
- for the ``--start-only`` distributions (those that only MLflow requires), pycs only for the
  modules that importing the ``--probe`` modules imports: MLflow ships about twice the code a
  model's server imports (its tracking server, GenAI, gateway, the Databricks SDK); a module
  without a pyc is still importable (compiled in memory when imported). If the probe fails
  (an import error), every module is compiled and a note says why.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

ENVIRONMENT = {"PYTHONHASHSEED": "0", "PYTHONNODEBUGRANGES": "1", "PYTHONDONTWRITEBYTECODE": "1"}
"""Every compiling (and probing) process's variables, besides PATH and HOME."""

PROBE_TIMEOUT = 300
RULES = 2
"""Raised whenever what this file writes changes: the OCI backend's layer cache keys on it."""


@dataclass(frozen=True)
class BytecodePlan:
    """Which distributions get bytecode only for what the start imports, and what it imports."""

    start_only: tuple[str, ...] = ()
    """Canonical names: the packages only MLflow needs (``kiln.env.trim.mlflow_only``)."""
    probe: tuple[str, ...] = ()
    """Modules the start imports from them: kiln's runtime's MLflow imports, the model's loader."""

    def arguments(self) -> tuple[str, ...]:
        """This plan as the command line's options."""
        if not self.start_only:
            return ()
        return ("--start-only", *self.start_only, "--probe", *self.probe)


_COMPILE = r"""
import py_compile, sys
for line in sys.stdin.read().splitlines():
    source, shown = line.split("\0")
    try:
        py_compile.compile(source, dfile=shown, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError:
        pass  # like pip: a file that does not compile (a template, Python 2 code) gets no pyc
"""

_PROBE = r"""
import json, os, site, sys
site.addsitedir(sys.argv[1])
for name in sys.argv[2:]:
    __import__(name)
files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
print(json.dumps(sorted(os.path.realpath(f) for f in files if f)))
"""


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions(site_packages: str) -> dict[str, list[str]]:
    """Each distribution's canonical name -> the ``.py`` files its RECORD lists that exist (real
    paths under ``site_packages``, sorted)."""
    found: dict[str, list[str]] = {}
    top = os.path.realpath(site_packages)
    for entry in sorted(os.listdir(site_packages)):
        if not entry.endswith(".dist-info"):
            continue
        info = os.path.join(site_packages, entry)
        name = _name(info) or entry[: -len(".dist-info")].rsplit("-", 1)[0]
        files = set()
        try:
            with open(os.path.join(info, "RECORD"), encoding="utf-8", newline="") as record:
                rows = [row[0] for row in csv.reader(record) if row]
        except (OSError, csv.Error):
            continue
        for row in rows:
            path = os.path.realpath(os.path.join(site_packages, row))
            if path.endswith(".py") and path.startswith(top + os.sep) and os.path.isfile(path):
                files.add(path)
        found.setdefault(canonical(name), []).extend(sorted(files))
    return found


def _name(info: str) -> str | None:
    try:
        with open(os.path.join(info, "METADATA"), encoding="utf-8", errors="replace") as metadata:
            for line in metadata:
                if line.startswith("Name:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():
                    break
    except OSError:
        pass
    return None


def probe(python: str, site_packages: str, modules: list[str]) -> tuple[set[str] | None, str]:
    """The real paths of the files importing ``modules`` loads (None if that failed), and why not."""
    if not modules:
        return set(), ""
    with tempfile.TemporaryDirectory(prefix="kiln-probe-") as home:
        try:
            done = subprocess.run(
                [python, "-S", "-c", _PROBE, site_packages, *modules],
                capture_output=True,
                text=True,
                env=_environment(home),
                cwd=home,
                timeout=PROBE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, str(exc)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return None, lines[-1] if lines else f"exit status {done.returncode}"
    try:  # the last line: what the imports themselves print comes before it
        return set(json.loads(done.stdout.strip().splitlines()[-1])), ""
    except (IndexError, ValueError):
        return None, f"the import probe printed no list of modules: {done.stdout[-200:]!r}"


def compile_files(python: str, files: list[str], site_packages: str, shown_as: str) -> str:
    """Compile ``files`` in one fresh process; the pycs name each source by its path in the image."""
    top = os.path.realpath(site_packages)
    lines = [f"{path}\0{shown_as}{path[len(top) :]}" for path in files]
    with tempfile.TemporaryDirectory(prefix="kiln-compile-") as home:
        done = subprocess.run(
            [python, "-s", "-c", _COMPILE],
            input="\n".join(lines),
            capture_output=True,
            text=True,
            env=_environment(home),
            check=False,
        )
    return "" if done.returncode == 0 else done.stderr[-2000:] or f"exit status {done.returncode}"


def _environment(home: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, **ENVIRONMENT}


MANIFEST = "manifest.json"


def read_overlay(directory: str) -> list[tuple[str, str, str]]:
    """``(path in site-packages, original sha256, replacement file)`` from an overlay directory."""
    with open(os.path.join(directory, MANIFEST), encoding="utf-8") as manifest:
        return [(path, sha, os.path.join(directory, name)) for path, sha, name in json.load(manifest)]


def apply_overlay(site_packages: str, entries: Sequence[tuple[str, str, str]]) -> int:
    """Replace each installed file whose sha256 is the entry's original; returns how many were.
    The file keeps its mode; its content becomes the replacement's."""
    top = os.path.realpath(site_packages)
    replaced = 0
    for path, original, replacement in entries:
        target = os.path.realpath(os.path.join(site_packages, path))
        if not target.startswith(top + os.sep) or not os.path.isfile(target):
            continue
        if _sha256(target) != original:
            continue
        mode = os.stat(target).st_mode & 0o7777
        temporary = target + ".kiln-new"
        with open(replacement, "rb") as source, open(temporary, "wb") as out:
            while True:
                chunk = source.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
        replaced += 1
    return replaced


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def compile_environment(
    python: str,
    site_packages: str,
    *,
    shown_as: str | None = None,
    start_only: Sequence[str] = (),
    probe_modules: Sequence[str] = (),
) -> tuple[str, list[tuple[str, str]]]:
    """Write the environment's pycs; returns a note (why every module was compiled after all, or
    "") and the distributions whose compile failed, each with the tail of its error output."""
    shown = (shown_as or os.path.realpath(site_packages)).rstrip("/")
    found = distributions(site_packages)
    limited = {canonical(name) for name in start_only} & set(found)
    imported: set[str] | None = set()
    note = ""
    if limited:
        imported, why = probe(python, site_packages, list(probe_modules))
        if imported is None:
            note = f"importing {' '.join(probe_modules)} failed ({why}); every module was compiled"
    jobs = []
    for name, files in sorted(found.items()):
        if name in limited and imported is not None:
            files = [path for path in files if path in imported]
        if files:
            jobs.append((name, files))

    def one(job: tuple[str, list[str]]) -> tuple[str, str]:
        return job[0], compile_files(python, job[1], site_packages, shown)

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        results = list(pool.map(one, jobs))
    return note, [(name, error) for name, error in results if error]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finish.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--site-packages", required=True, help="the environment's site-packages here")
    parser.add_argument("--shown-as", help="its path in the image (default: the same)")
    parser.add_argument("--overlay", help="a directory of replacements with their manifest.json")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that compiles")
    parser.add_argument("--start-only", nargs="*", default=[], help="distributions limited to the probe")
    parser.add_argument("--probe", nargs="*", default=[], help="modules whose imports are compiled")
    args = parser.parse_args(argv)
    if args.overlay:
        apply_overlay(args.site_packages, read_overlay(args.overlay))
    note, failed = compile_environment(
        args.python,
        args.site_packages,
        shown_as=args.shown_as,
        start_only=args.start_only,
        probe_modules=args.probe,
    )
    if note:
        print(f"bytecode: {note}", file=sys.stderr)
    for name, error in failed:
        print(f"bytecode: compiling {name} with {args.python} failed:\n{error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
