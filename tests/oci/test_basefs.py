"""A base's filesystem from its layer tars: overlay semantics, the per-base cache, reads by path."""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kiln.oci.basefs import DirectoryFiles, base_files, is_dir, realpath


def layer(*members: tuple[str, str, bytes | str | None, int], compress: bool = False) -> bytes:
    """A layer tar from (name, kind, content or link target, mode) tuples."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, kind, content, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(content)
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(content)
                tar.addfile(info)
            else:
                data = content if isinstance(content, bytes) else str(content).encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    data = out.getvalue()
    return gzip.compress(data) if compress else data


LOWER = layer(
    ("etc", "dir", None, 0o755),
    ("etc/os-release", "symlink", "../usr/lib/os-release", 0o777),
    ("usr/lib/os-release", "file", 'ID=debian\nVERSION_ID="12"\n', 0o644),
    ("tmp", "dir", None, 0o1777),
    ("lib", "symlink", "usr/lib", 0o777),
    ("usr/lib/x86_64-linux-gnu/libc.so.6", "file", b"\x7fELF", 0o755),
    ("opt/old/a.txt", "file", "a", 0o644),
    ("opt/old/b.txt", "file", "b", 0o644),
    ("var/cache/big.bin", "file", b"z" * 10, 0o600),
    ("srv/gone/x", "file", "x", 0o644),
)
UPPER = layer(
    ("opt/old/.wh..wh..opq", "file", b"", 0o644),
    ("opt/old/c.txt", "file", "c", 0o644),
    ("srv/.wh.gone", "file", b"", 0o644),
    ("etc/passwd", "file", "root:x:0:0:root:/root:/bin/bash\n", 0o644),
    ("etc/passwd-link", "hardlink", "etc/passwd", 0o644),
    compress=True,
)


class Opener:
    """Opens layers from bytes, counting how often (the cache must make later builds open none)."""

    def __init__(self, *layers: bytes) -> None:
        self.layers = layers
        self.opened: list[int] = []

    @contextlib.contextmanager
    def __call__(self, number: int) -> Iterator[BinaryIO]:
        self.opened.append(number)
        yield io.BytesIO(self.layers[number])


def test_whiteouts_and_opaque_directories_apply_in_order(tmp_path: Path) -> None:
    files = base_files(tmp_path / "bases" / "abc", 2, Opener(LOWER, UPPER))
    assert files.entry("/srv/gone") is None and files.entry("/srv/gone/x") is None
    assert files.listdir("/opt/old") == ["c.txt"]  # the opaque marker hid a.txt and b.txt
    assert files.read("/opt/old/c.txt") == b"c"
    assert files.entry("/tmp").mode == 0o1777  # type: ignore[union-attr]


def test_symlinks_are_followed_for_reads_but_not_for_entry(tmp_path: Path) -> None:
    files = base_files(tmp_path / "bases" / "abc", 2, Opener(LOWER, UPPER))
    assert files.entry("/etc/os-release").kind == "symlink"  # type: ignore[union-attr]
    assert files.read("/etc/os-release") == b'ID=debian\nVERSION_ID="12"\n'
    assert files.read("/lib/x86_64-linux-gnu/libc.so.6") == b"\x7fELF"  # through /lib -> usr/lib
    assert files.entry("/lib/x86_64-linux-gnu/libc.so.6").kind == "file"  # type: ignore[union-attr]
    assert files.read("/etc/passwd-link") == b"root:x:0:0:root:/root:/bin/bash\n"  # a tar hardlink
    assert realpath(files, "/lib/x86_64-linux-gnu") == "/usr/lib/x86_64-linux-gnu"
    assert is_dir(files, "/lib") and not is_dir(files, "/etc/passwd")


def test_the_index_and_small_files_are_cached_per_base(tmp_path: Path) -> None:
    cache = tmp_path / "bases" / "abc"
    first = Opener(LOWER, UPPER)
    base_files(cache, 2, first)
    assert first.opened == [0, 1]
    again = Opener(LOWER, UPPER)
    files = base_files(cache, 2, again)
    assert files.read("/etc/passwd") == b"root:x:0:0:root:/root:/bin/bash\n"  # kept: /etc
    assert again.opened == []  # nothing read from a layer
    assert files.read("/var/cache/big.bin") == b"z" * 10  # not kept: read from its layer
    assert again.opened == [0]
    assert sorted(p.name for p in cache.parent.iterdir()) == ["abc"]  # no temp dir left behind


def test_directory_files_see_a_host_tree_at_its_mount_point(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python3.12").write_text("elf")
    (tmp_path / "bin" / "python3").symlink_to("python3.12")
    files = DirectoryFiles(tmp_path, "/opt/kiln/python")
    assert realpath(files, "/opt/kiln/python/bin/python3") == "/opt/kiln/python/bin/python3.12"
    assert files.read("/opt/kiln/python/bin/python3") == b"elf"
    assert files.entry("/opt") is not None and files.entry("/usr") is None
