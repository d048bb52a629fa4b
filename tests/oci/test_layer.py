"""Reproducible layers: same entries, same bytes; tar headers normalised; laid over a base's directories."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from kiln.oci.blobstore import BlobStore, LayerCache
from kiln.oci.layer import GZIP_LEVEL, Entry, plan_entries, tree_entries, write_layer
from kiln.oci.types import FileEntry


class DictFiles:
    """A base filesystem given as a dict (the BaseFiles protocol over plain values)."""

    def __init__(self, entries: list[FileEntry], contents: dict[str, bytes] | None = None) -> None:
        self.entries = {e.path: e for e in entries}
        self.contents = contents or {}

    def entry(self, path: str) -> FileEntry | None:
        return self.entries.get(path)

    def read(self, path: str) -> bytes | None:
        return self.contents.get(path)


DEBIAN = DictFiles(
    [
        FileEntry("/tmp", "dir", 0o1777),
        FileEntry("/etc", "dir", 0o755),
        FileEntry("/var", "dir", 0o755),
        FileEntry("/var/log", "dir", 0o755),
        FileEntry("/var/log/nginx", "dir", 0o750, 0, 4),
        FileEntry("/lib", "symlink", 0o777, target="usr/lib"),
        FileEntry("/usr", "dir", 0o755),
        FileEntry("/usr/lib", "dir", 0o755),
    ]
)


def make_tree(root: Path) -> Path:
    (root / "opt/app/bin").mkdir(parents=True)
    (root / "opt/app/bin/run").write_text("#!/bin/sh\necho hi\n")
    (root / "opt/app/bin/run").chmod(0o700)  # any execute bit: 0755
    (root / "opt/app/data.txt").write_text("data")
    (root / "opt/app/data.txt").chmod(0o600)  # no execute bit: 0644
    (root / "opt/app/link").symlink_to("data.txt")
    os.link(root / "opt/app/data.txt", root / "opt/app/same.txt")
    return root


def read_layer(store: BlobStore, digest: str) -> list[tarfile.TarInfo]:
    with tarfile.open(store.path(digest), mode="r:gz") as tar:
        return tar.getmembers()


def test_same_entries_give_the_same_bytes_and_digests(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    first = write_layer(tree_entries(tree), BlobStore(tmp_path / "a"))
    os.utime(tree / "opt/app/data.txt", (12345, 12345))  # times never reach the layer
    (tree / "opt/app/bin").chmod(0o700)  # nor the host's directory modes
    second = write_layer(tree_entries(tree), BlobStore(tmp_path / "b"))
    assert first.layer == second.layer
    a = (tmp_path / "a/blobs/sha256" / first.layer.digest.split(":")[1]).read_bytes()
    assert a == (tmp_path / "b/blobs/sha256" / first.layer.digest.split(":")[1]).read_bytes()
    assert first.layer.digest == "sha256:" + hashlib.sha256(a).hexdigest()
    assert first.layer.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(a)).hexdigest()
    assert first.layer.size == len(a)


def test_headers_are_normalised(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    store = BlobStore(tmp_path / "store")
    result = write_layer(tree_entries(tree), store, epoch=1700000000)
    members = {m.name: m for m in read_layer(store, result.layer.digest)}
    assert list(members) == [
        "opt",
        "opt/app",
        "opt/app/bin",
        "opt/app/bin/run",
        "opt/app/data.txt",
        "opt/app/link",
        "opt/app/same.txt",
    ]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members.values()} == {
        (0, 0, "", "", 1700000000)
    }
    assert members["opt/app/bin"].mode == 0o755 and members["opt/app/bin/run"].mode == 0o755
    assert members["opt/app/data.txt"].mode == 0o644
    assert members["opt/app/link"].issym() and members["opt/app/link"].linkname == "data.txt"
    # the second name of a hard-linked file is a tar hardlink to the first
    assert members["opt/app/same.txt"].islnk() and members["opt/app/same.txt"].linkname == "opt/app/data.txt"


def test_gzip_header_has_no_name_and_no_time(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    result = write_layer([Entry.file("/a", b"x")], store)
    data = store.path(result.layer.digest).read_bytes()
    assert data[:4] == b"\x1f\x8b\x08\x00"  # gzip, deflate, no FNAME/FEXTRA/FCOMMENT flags
    assert data[4:8] == b"\x00\x00\x00\x00" and data[9] == 255  # MTIME 0, OS unknown
    assert GZIP_LEVEL == 6


def test_long_and_non_ascii_names_are_stable(tmp_path: Path) -> None:
    long = "/opt/" + "/".join(["d" * 60] * 4) + "/fïle.txt"
    entries = [Entry.file(long, b"x")]
    one = write_layer(entries, BlobStore(tmp_path / "a"))
    two = write_layer(entries, BlobStore(tmp_path / "b"))
    assert one.layer.digest == two.layer.digest
    assert long.lstrip("/") in [m.name for m in read_layer(BlobStore(tmp_path / "a"), one.layer.digest)]


def test_base_directories_keep_their_mode_and_owner() -> None:
    planned = plan_entries(
        [
            Entry.file("/tmp/kiln/x", b"x"),
            Entry.file("/var/log/nginx/error.log", b""),
            Entry.directory("/etc"),
        ],
        DEBIAN,
    )
    modes = {e.path: (e.kind, oct(e.mode), e.gid) for e in planned}
    assert modes["/tmp"] == ("dir", "0o1777", 0)  # stays world-writable and sticky
    assert modes["/tmp/kiln"] == ("dir", "0o755", 0)  # new: plain 0755
    assert modes["/var/log/nginx"] == ("dir", "0o750", 4)  # the base's, not the tree's
    assert modes["/etc"] == ("dir", "0o755", 0)


def test_paths_under_a_symlinked_base_directory_go_to_its_target() -> None:
    # /lib -> usr/lib on merged-/usr Debian: a layer with a lib/ directory would replace the link.
    planned = plan_entries(
        [Entry.directory("/lib"), Entry.directory("/lib/systemd"), Entry.file("/lib/systemd/x.service", b"")],
        DEBIAN,
    )
    paths = [e.path for e in planned]
    assert "/lib" not in paths and not any(p.startswith("/lib/") for p in paths)
    assert paths == ["/usr", "/usr/lib", "/usr/lib/systemd", "/usr/lib/systemd/x.service"]


def test_later_entries_win_and_paths_sort_parents_first() -> None:
    planned = plan_entries(
        [
            Entry.file("/etc/passwd", b"old"),
            Entry.file("/a-b", b""),
            Entry.file("/a/b", b""),
            Entry.file("/etc/passwd", b"new"),
        ],
        None,
    )
    assert [e.path for e in planned] == ["/a", "/a/b", "/a-b", "/etc", "/etc/passwd"]
    assert planned[-1].data == b"new"


def test_keep_mode_policy_keeps_package_bits(tmp_path: Path) -> None:
    root = tmp_path / "deb"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/helper").write_bytes(b"\x7fELF")
    (root / "usr/bin/helper").chmod(0o4755)
    (root / "var/cache/private").mkdir(parents=True)
    (root / "var/cache/private").chmod(0o700)
    kept = {e.path: e.mode for e in tree_entries(root, modes="keep")}
    assert kept["/usr/bin/helper"] == 0o4755 and kept["/var/cache/private"] == 0o700
    normal = {e.path: e.mode for e in tree_entries(root)}
    assert normal["/usr/bin/helper"] == 0o755 and normal["/var/cache/private"] == 0o755


def test_special_files_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match="not a regular file"):
        tree_entries(tmp_path)


def test_the_store_keeps_one_copy_and_the_cache_finds_it(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    first = write_layer([Entry.file("/a", b"x")], store)
    second = write_layer([Entry.file("/a", b"x")], store)
    assert first.written and not second.written
    assert list((store.root / "tmp").iterdir()) == []  # no temp file left behind
    cache = LayerCache(store)
    cache.put("key", first.layer)
    assert cache.get("key") == first.layer
    store.path(first.layer.digest).unlink()  # a cached layer whose blob is gone is not used
    assert cache.get("key") is None


def test_gzip_output_is_readable_by_the_tar_tool(tmp_path: Path) -> None:
    import subprocess

    store = BlobStore(tmp_path / "store")
    result = write_layer(tree_entries(make_tree(tmp_path / "tree")), store)
    listing = subprocess.run(
        ["tar", "-tvzf", str(store.path(result.layer.digest))], capture_output=True, text=True, check=True
    ).stdout
    assert "opt/app/same.txt link to opt/app/data.txt" in listing
    assert "root/root" not in listing and "0/0" in listing
    assert io.BytesIO(gzip.decompress(store.path(result.layer.digest).read_bytes())).read(2)
