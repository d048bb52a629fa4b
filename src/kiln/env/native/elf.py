"""What one ELF file needs and provides: its DT_NEEDED and DT_SONAME entries, read with pyelftools."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile

ELF_MAGIC = b"\x7fELF"

# pyelftools' e_machine names for the image platforms kiln builds.
MACHINES = {"linux/amd64": "EM_X86_64", "linux/arm64": "EM_AARCH64"}


@dataclass(frozen=True)
class ElfLinks:
    """The dynamic linking facts of one ELF file."""

    machine: str
    """pyelftools' e_machine name, e.g. ``EM_X86_64``."""
    soname: str | None
    needed: tuple[str, ...]
    """DT_NEEDED entries in file order: what the dynamic linker must find to load it."""


def read_links(stream: BinaryIO) -> ElfLinks | None:
    """The linking facts of the ELF file in ``stream`` (seekable), or None when it is not one.

    Read from the PT_DYNAMIC segment, which the loader uses, so stripped section headers do not matter.
    """
    try:
        elf = ELFFile(stream)
        machine = str(elf["e_machine"])
        needed: list[str] = []
        soname = None
        for segment in elf.iter_segments():
            if not isinstance(segment, DynamicSegment):
                continue
            for tag in segment.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(str(getattr(tag, "needed", "")))
                elif tag.entry.d_tag == "DT_SONAME":
                    soname = str(getattr(tag, "soname", "")) or None
    except (ELFError, ValueError, OSError, KeyError, AssertionError):
        # A truncated or exotic ELF (firmware blobs, test fixtures) links nothing kiln can act on.
        return None
    return ElfLinks(machine, soname, tuple(needed))
