"""The native libraries a locked environment needs from the base image, and the Debian packages for them.

``find_native_needs`` runs after the fetch: it reads the ELF files in the wheelhouse, drops
what the wheels, glibc and the base image provide, and maps each remaining soname to the
Debian package that ships it (``kiln.env.native.contents``). ``packages_to_add`` then drops
packages the base already has; what is left is added to the image, and a library no
package ships fails the build naming the soname and the wheel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln.env.native.contents import archive_for, soname_index
from kiln.env.native.scan import unprovided_libraries
from kiln.env.spec import TargetPlatform
from kiln.errors import DependencyError


class PackageLookup(Protocol):
    """Which distribution package ships a shared library (``kiln.env.native.contents.SonameIndex``)."""

    def package_for(self, soname: str) -> str | None: ...


@dataclass(frozen=True)
class MissingLibrary:
    """A shared library a wheel needs that neither the environment nor the base provides."""

    soname: str
    """The DT_NEEDED name, e.g. ``libgomp.so.1``."""
    wheel: str
    """The wheel's file name."""
    needed_by: str
    """The ELF file inside the wheel that needs it, e.g. ``lightgbm/lib/lib_lightgbm.so``."""
    package: str | None
    """The Debian package that ships it, or None when no package of the archive does."""


@dataclass(frozen=True)
class NativeNeeds:
    """What the environment's native code needs from the base image, sorted by soname then wheel."""

    libraries: tuple[MissingLibrary, ...] = ()

    @property
    def packages(self) -> tuple[str, ...]:
        """The Debian packages that ship the missing libraries, sorted, each once."""
        return tuple(sorted({lib.package for lib in self.libraries if lib.package is not None}))

    @property
    def unresolved(self) -> tuple[MissingLibrary, ...]:
        """Missing libraries no package of the archive ships."""
        return tuple(lib for lib in self.libraries if lib.package is None)


def find_native_needs(
    wheels: Sequence[Path],
    *,
    base_files: Iterable[str],
    target: TargetPlatform,
    cache_dir: Path,
    suite: str = "bookworm",
    lookup: PackageLookup | None = None,
) -> NativeNeeds:
    """The libraries the ELF files in ``wheels`` need that nothing provides, with their packages.

    ``base_files`` are the paths of files in the base image (``/usr/lib/x86_64-linux-gnu/libz.so.1``;
    only those in the linker's default directories count) or bare sonames. ``suite`` is the base's
    Debian release (``VERSION_CODENAME`` in its /etc/os-release); its Contents index is read only
    when something is missing, and cached. ``lookup`` replaces that index (another distribution).
    """
    missing = unprovided_libraries(wheels, base_files=base_files, target=target, cache_dir=cache_dir)
    if not missing:
        return NativeNeeds()
    if lookup is None:
        lookup = soname_index(archive_for(target.os_arch, suite), cache_dir=cache_dir)
    return NativeNeeds(
        tuple(
            MissingLibrary(item.soname, item.wheel, item.needed_by, lookup.package_for(item.soname))
            for item in missing
        )
    )


def packages_to_add(needs: NativeNeeds, installed: Iterable[str]) -> tuple[str, ...]:
    """The packages of ``needs`` the base does not have (``installed``: e.g. ``installed_packages``)."""
    have = {name.partition(":")[0] for name in installed}
    return tuple(package for package in needs.packages if package not in have)


def installed_packages(dpkg_status: str) -> frozenset[str]:
    """Names of the packages ``/var/lib/dpkg/status`` records as installed."""
    names: set[str] = set()
    for stanza in dpkg_status.split("\n\n"):
        fields = dict(
            (key.strip(), value.strip())
            for key, sep, value in (line.partition(":") for line in stanza.splitlines())
            if sep and not key.startswith((" ", "\t"))
        )
        if "Package" in fields and fields.get("Status", "").endswith(" installed"):
            names.add(fields["Package"])
    return frozenset(names)


def require_resolved(needs: NativeNeeds) -> None:
    """DependencyError when a missing library has no package: the image would fail at model load."""
    if not needs.unresolved:
        return
    what = "; ".join(f"{lib.soname!r} needed by {lib.needed_by} in {lib.wheel}" for lib in needs.unresolved)
    raise DependencyError(
        f"no Debian package ships the shared libraries the environment needs: {what}",
        hint="the base image lacks them and no wheel vendors them: use a base image that has them, "
        "or a wheel build that bundles them (auditwheel repair)",
    )


def describe(needs: NativeNeeds, added: Sequence[str]) -> str:
    """A build note: which packages are added for which libraries and wheels."""
    parts = []
    for package in added:
        libs = [lib for lib in needs.libraries if lib.package == package]
        wheels = sorted({lib.wheel.split("-")[0] for lib in libs})
        sonames = sorted({lib.soname for lib in libs})
        parts.append(f"{package} ({', '.join(sonames)} for {', '.join(wheels)})")
    return "added Debian packages for native libraries the wheels need: " + "; ".join(parts)
