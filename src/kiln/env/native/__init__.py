"""Native library needs of a locked environment: an ELF scan of its wheels, Debian packages for the gaps."""

from __future__ import annotations

from kiln.env.native.contents import DebianArchive, SonameIndex, archive_for, soname_index
from kiln.env.native.needs import (
    MissingLibrary,
    NativeNeeds,
    PackageLookup,
    describe,
    find_native_needs,
    installed_packages,
    packages_to_add,
    require_resolved,
)

__all__ = [
    "DebianArchive",
    "MissingLibrary",
    "NativeNeeds",
    "PackageLookup",
    "SonameIndex",
    "archive_for",
    "describe",
    "find_native_needs",
    "installed_packages",
    "packages_to_add",
    "require_resolved",
    "soname_index",
]
