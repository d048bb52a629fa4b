"""BaseImageInfo: what a base image holds (Python, arch, glibc, nginx, apt), found by running it once."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kiln.errors import BuildError
from kiln.image.facts import LIBRARY_DIRS, PYTHON_MINORS

log = logging.getLogger(__name__)

PROBE_SCRIPT = r"""
for c in python3 python; do
  p=$(command -v "$c" 2>/dev/null) && { echo "python=$p"; break; }
done
for v in @MINORS@; do
  p=$(command -v "python$v" 2>/dev/null) && echo "python$v=$p"
done
for t in nginx apt-get; do echo "$t=$(command -v "$t" 2>/dev/null)"; done
echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc //p')"
if [ -r /etc/os-release ]; then
  . /etc/os-release; echo "os=${ID:-}:${VERSION_ID:-}"; echo "codename=${VERSION_CODENAME:-}"
fi
for d in @LIBDIRS@; do
  [ -d "$d" ] && for f in "$d"/*.so*; do [ -e "$f" ] && echo "lib=$f"; done
done
command -v dpkg-query >/dev/null 2>&1 &&
  dpkg-query -W -f='${db:Status-Status} ${Package}\n' 2>/dev/null | sed -n 's/^installed /pkg=/p'
p=$(command -v python3 2>/dev/null || command -v python 2>/dev/null) && "$p" -c '
import sys
print("python_version=%d.%d.%d" % sys.version_info[:3])
try:
    import pip
    print("pip=" + pip.__version__)
except Exception:
    pass
'
exit 0
""".replace("@MINORS@", " ".join(PYTHON_MINORS)).replace("@LIBDIRS@", " ".join(LIBRARY_DIRS))
"""A POSIX sh script printing ``key=value`` lines; run with ``--entrypoint /bin/sh``."""


@dataclass(frozen=True)
class BaseImageInfo:
    """The facts about a base image that decide how kiln's image is laid out on top of it."""

    image: str
    image_id: str
    """``sha256:...`` of the local image; the probe cache key."""
    os_arch: str = "linux/amd64"
    python: str | None = None
    """The default interpreter's path (``python3``, else ``python``), or None."""
    python_version: str | None = None
    """``3.11.2`` for that interpreter."""
    pythons: Mapping[str, str] = field(default_factory=dict)
    """Versioned interpreters on PATH: ``{"3.11": "/usr/bin/python3.11"}``."""
    glibc: str | None = None
    """``2.36``; None for musl or no libc tools."""
    has_nginx: bool = False
    has_apt: bool = False
    pip_version: str | None = None
    """The pip importable by the default interpreter, if any."""
    os_release: str | None = None
    """``debian:12`` from /etc/os-release."""
    codename: str | None = None
    """``bookworm`` (VERSION_CODENAME): which Debian release's packages fit the base."""
    libraries: tuple[str, ...] = ()
    """Shared libraries in the linker's default directories (``/usr/lib/x86_64-linux-gnu/libz.so.1``)."""
    packages: tuple[str, ...] = ()
    """Installed Debian packages (dpkg's database), sorted."""

    @property
    def python_minor(self) -> str | None:
        if not self.python_version:
            return None
        return ".".join(self.python_version.split(".")[:2])

    def interpreter_for(self, minor: str) -> str | None:
        """A path of an interpreter of Python ``minor`` (``3.11``) in this image, or None."""
        if self.python and self.python_minor == minor:
            return self.python
        return self.pythons.get(minor)


def parse_probe_output(image: str, image_id: str, os_arch: str, text: str) -> BaseImageInfo:
    """BaseImageInfo from the ``key=value`` lines PROBE_SCRIPT printed."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key not in values:
            values[key] = value.strip()
    pythons = {
        key.removeprefix("python"): value
        for key, value in values.items()
        if key.startswith("python3.") and value
    }
    return BaseImageInfo(
        image=image,
        image_id=image_id,
        os_arch=os_arch,
        python=values.get("python") or None,
        python_version=values.get("python_version") or None,
        pythons=pythons,
        glibc=values.get("glibc") or None,
        has_nginx=bool(values.get("nginx")),
        has_apt=bool(values.get("apt-get")),
        pip_version=values.get("pip") or None,
        os_release=values.get("os") or None,
        codename=values.get("codename") or None,
        libraries=tuple(sorted(_all(text, "lib"))),
        packages=tuple(sorted(_all(text, "pkg"))),
    )


def _all(text: str, key: str) -> set[str]:
    """Every value of a key the probe prints once per item (``lib=``, ``pkg=``)."""
    prefix = key + "="
    return {line.strip()[len(prefix) :] for line in text.splitlines() if line.strip().startswith(prefix)}


def assumed_python_slim(image: str, minor: str) -> BaseImageInfo:
    """What the official ``python:X.Y-slim`` images hold, for ``generate-dockerfile`` without Docker."""
    return BaseImageInfo(
        image=image,
        image_id="",
        python="/usr/local/bin/python3",
        python_version=minor,
        glibc="2.36",
        has_nginx=False,
        has_apt=True,
        pip_version="unknown",
        os_release="debian",
    )


class ProbeCache:
    """BaseImageInfo by image id, kept as small JSON files (an image id never changes content)."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is None:
            root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            directory = Path(root) / "kiln" / "probe"
        self.directory = directory

    def _path(self, image_id: str, os_arch: str) -> Path:
        # v2: the probe also lists libraries and packages; earlier entries lack them.
        key = "v2-" + image_id.replace(":", "-") + "-" + os_arch.replace("/", "-")
        return self.directory / f"{key}.json"

    def get(self, image: str, image_id: str, os_arch: str) -> BaseImageInfo | None:
        path = self._path(image_id, os_arch)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data.update(image=image, image_id=image_id, os_arch=os_arch)
            return BaseImageInfo(**data)
        except (OSError, ValueError, TypeError):
            return None

    def put(self, info: BaseImageInfo) -> None:
        path = self._path(info.image_id, info.os_arch)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(asdict(info), sort_keys=True), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:  # a cache that cannot be written only costs time
            log.debug("could not cache the probe of %s: %s", info.image, exc)


def probe_base_image(
    image: str,
    *,
    image_id: str,
    os_arch: str,
    run_script: Callable[[str], str],
    cache: ProbeCache | None = None,
) -> BaseImageInfo:
    """Run PROBE_SCRIPT in ``image`` (via ``run_script``) unless its id was probed before."""
    cache = cache or ProbeCache()
    cached = cache.get(image, image_id, os_arch)
    if cached is not None:
        return cached
    output = run_script(PROBE_SCRIPT)
    info = parse_probe_output(image, image_id, os_arch, output)
    if info.python is None and not info.has_apt and info.glibc is None:
        raise BuildError(
            f"base image {image!r} could not be inspected: the probe found no Python, no apt-get "
            "and no glibc (expected a Debian/Ubuntu-like image with /bin/sh, e.g. python:3.11-slim)",
            log_tail=output[-2000:] or None,
        )
    cache.put(info)
    return info
