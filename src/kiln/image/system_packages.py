"""The Debian packages an image adds beyond nginx and a JRE: the user's ``--system-package``, and the
packages that ship shared libraries the locked wheels need but neither they nor the base provide.

The second kind is found at build time (``kiln.env.native``: an ELF scan of the wheels, the base's
library directories, Debian's Contents index), so a model whose wheel needs, say, ``libgomp.so.1``
on a slim base gets ``libgomp1`` added with a note, instead of a worker that dies at model load
after deployment. A library no Debian package ships fails the build, naming the library, the wheel
and what to do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kiln.env.cache import cache_root
from kiln.env.native import describe, find_native_needs, packages_to_add, require_resolved
from kiln.env.spec import EnvSpec
from kiln.errors import BuildError, UsageError
from kiln.image.probe import BaseImageInfo

_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
"""Debian policy 5.6.1: what a package name may be (so a name never reaches a shell as anything else)."""
_DEFAULT_SUITE = "bookworm"


@dataclass(frozen=True)
class SystemPackages:
    """The packages to add, the user's first, and what the build should say about them."""

    packages: tuple[str, ...]
    notes: tuple[str, ...] = ()


def check_package_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` without repeats; UsageError for anything that is not a Debian package name."""
    for name in names:
        if not _PACKAGE_NAME.match(name):
            raise UsageError(
                f"--system-package {name!r} is not a Debian package name "
                "(expected lower-case letters, digits, '+', '-' and '.', e.g. libgomp1)"
            )
    return tuple(dict.fromkeys(names))


def decide_system_packages(
    requested: Sequence[str],
    env: EnvSpec,
    base: BaseImageInfo,
    *,
    say: Callable[[str], None] = lambda _: None,
) -> SystemPackages:
    """The user's packages plus those that ship libraries the wheels need and the base lacks."""
    chosen = check_package_names(requested)
    if env.wheelhouse is None:  # conda: native libraries come from the channel's packages
        return SystemPackages(chosen)
    if not base.libraries:
        note = (
            f"the native libraries the wheels need were not checked: base image {base.image!r} "
            "was not inspected (no Docker engine), so its libraries are unknown"
        )
        return SystemPackages(chosen, (note,))
    say("checking the native libraries the wheels need against the base image")
    needs = find_native_needs(
        sorted(env.wheelhouse.glob("*.whl")),
        base_files=base.libraries,
        target=env.target,
        cache_dir=cache_root(),
        suite=base.codename or _DEFAULT_SUITE,
    )
    if not needs.libraries:
        return SystemPackages(chosen)
    require_resolved(needs)
    added = packages_to_add(needs, (*base.packages, *chosen))
    if added and not base.has_apt:
        raise BuildError(
            f"base image {base.image!r} lacks shared libraries the environment needs and has no apt-get "
            f"to add them: {describe(needs, added).split(': ', 1)[1]}",
            hint="use a Debian or Ubuntu based image that has them, or one with apt-get",
        )
    return SystemPackages((*chosen, *added), (describe(needs, added),) if added else ())
