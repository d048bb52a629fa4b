"""add_runtime_user: /etc/passwd for the runtime user, as the Dockerfile's user step (user.j2) writes it."""

from __future__ import annotations

from pathlib import Path

from tests.image.layers.venv_support import RootDirectory

from kiln import contract
from kiln.image.layers.users import add_runtime_user, passwd_line

BASE_PASSWD = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"


def base_with(tmp_path: Path, passwd: str) -> RootDirectory:
    (tmp_path / "base/etc").mkdir(parents=True)
    (tmp_path / "base/etc/passwd").write_text(passwd)
    return RootDirectory(tmp_path / "base")


def test_the_kiln_line_is_appended_to_the_bases_passwd(tmp_path: Path) -> None:
    assert add_runtime_user(tmp_path / "tree", base=base_with(tmp_path, BASE_PASSWD))
    written = (tmp_path / "tree/etc/passwd").read_text()
    assert written == BASE_PASSWD + "\nkiln:x:10001:0:kiln model server:/tmp:/usr/sbin/nologin\n"
    assert (tmp_path / "tree/etc/passwd").stat().st_mode & 0o777 == 0o644


def test_a_base_that_has_the_uid_is_left_alone(tmp_path: Path) -> None:
    base = base_with(tmp_path, BASE_PASSWD + f"\nservice:x:{contract.UID}:0::/srv:/bin/sh\n")
    assert not add_runtime_user(tmp_path / "tree", base=base)
    assert not (tmp_path / "tree").exists()


def test_another_uid_gets_its_own_line(tmp_path: Path) -> None:
    assert add_runtime_user(tmp_path / "tree", base=base_with(tmp_path, BASE_PASSWD + "\n"), uid=4242)
    assert (tmp_path / "tree/etc/passwd").read_text().endswith(passwd_line(4242))
    assert passwd_line(4242) == "kiln:x:4242:0:kiln model server:/tmp:/usr/sbin/nologin\n"
