"""kiln.image.facts: each fact defined once, and the two backends' renderings of it agree when run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.image.conftest import MakeEnv
from tests.image.dockerfile.test_dockerfile import spec_for
from tests.image.layers.venv_support import RootDirectory

from kiln import contract
from kiln.image import facts
from kiln.image.dockerfile.render import render_dockerfile, user
from kiln.image.layers.probe import probe_files
from kiln.image.layers.users import add_runtime_user
from kiln.image.layers.venv import prune_tests
from kiln.image.probe import PROBE_SCRIPT, parse_probe_output
from kiln.model.info import ModelInfo

BASE_PASSWD = "root:x:0:0:root:/root:/bin/bash\n"
TREE = [
    "venv/lib/python3.11/site-packages/numpy/tests/test_x.py",
    "venv/lib/python3.11/site-packages/numpy/core/tests/deep/t.py",
    "venv/lib/python3.11/site-packages/tests/t.py",
    "venv/lib/python3.11/site-packages/pkg/testing/t.py",
    "venv/lib/python3.11/site-packages/pkg/tests.py",
    "venv/tests/t.py",
    "venv/lib/python3.11/dist-packages/pkg/tests/t.py",
]


def _tree(root: Path) -> Path:
    for name in TREE:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def _listing(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


def test_the_pruning_rule_is_the_same_in_find_and_in_python(tmp_path: Path) -> None:
    by_find = _tree(tmp_path / "find")
    by_python = _tree(tmp_path / "python")
    command = f"find {by_find}/venv {facts.PRUNE_FIND} -prune -exec rm -rf {{}} +"
    subprocess.run(["/bin/sh", "-c", command], check=True)
    prune_tests(by_python, "/venv/lib/python3.11/site-packages")
    assert _listing(by_find) == _listing(by_python)
    kept = _listing(by_python)
    assert "venv/lib/python3.11/site-packages/numpy/tests" not in kept
    assert "venv/lib/python3.11/site-packages/numpy/core/tests" not in kept
    assert {"venv/tests/t.py", "venv/lib/python3.11/site-packages/pkg/tests.py"} <= set(kept)


def test_the_dockerfile_renders_the_rule_from_facts(make_env: MakeEnv, model: ModelInfo) -> None:
    assert f"-type d -name {facts.PRUNED_DIR} -path '*{facts.PRUNED_UNDER}*'" == facts.PRUNE_FIND
    assert f"find /opt/kiln/venv {facts.PRUNE_FIND} -prune" in render_dockerfile(
        spec_for(make_env, model, "virtualenv")
    )


def _dockerfile_user_step(spec_text: str, passwd: Path) -> str:
    """The user step's RUN command as sh runs it, pointed at ``passwd`` instead of /etc/passwd."""
    run = spec_text[spec_text.index("RUN ") + len("RUN ") :]
    return run.replace("\\\n", " ").replace("/etc/passwd", str(passwd))


@pytest.mark.parametrize("existing", ["", f"service:x:{contract.UID}:0::/srv:/bin/sh\n"])
def test_the_user_step_and_the_users_layer_write_the_same_passwd(
    make_env: MakeEnv, model: ModelInfo, tmp_path: Path, existing: str
) -> None:
    passwd = tmp_path / "docker/etc/passwd"
    passwd.parent.mkdir(parents=True)
    passwd.write_text(BASE_PASSWD + existing)
    step = _dockerfile_user_step(user(spec_for(make_env, model, "virtualenv")), passwd)
    subprocess.run(["/bin/sh", "-c", step], check=True, env={**os.environ, "KILN_UID": str(contract.UID)})
    (tmp_path / "base/etc").mkdir(parents=True)
    (tmp_path / "base/etc/passwd").write_text(BASE_PASSWD + existing)
    wrote = add_runtime_user(tmp_path / "oci", base=RootDirectory(tmp_path / "base"))
    assert wrote == (not existing)
    oci = (tmp_path / "oci/etc/passwd") if wrote else (tmp_path / "base/etc/passwd")
    assert passwd.read_text() == oci.read_text()
    expected = existing or facts.passwd_line(contract.UID, contract.GID) + "\n"
    assert passwd.read_text().endswith(expected)


def test_both_probes_look_for_the_same_pythons(tmp_path: Path) -> None:
    bin_dir = tmp_path / "root/usr/local/bin"
    bin_dir.mkdir(parents=True)
    for minor in ("3.7", *facts.PYTHON_MINORS, "3.99"):
        script = bin_dir / f"python{minor}"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
    shell = subprocess.run(
        ["/bin/sh", "-c", PROBE_SCRIPT],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        check=True,
    )
    by_running = parse_probe_output("base", "sha256:x", "linux/amd64", shell.stdout).pythons
    by_reading = probe_files(
        "base",
        image_id="sha256:x",
        os_arch="linux/amd64",
        config={"config": {"Env": ["PATH=/usr/local/bin"]}},
        files=RootDirectory(tmp_path / "root"),  # type: ignore[arg-type]
    ).pythons
    assert set(by_reading) == set(facts.PYTHON_MINORS)
    assert {minor: path.removeprefix(str(tmp_path / "root")) for minor, path in by_running.items()} == {
        minor: path for minor, path in by_reading.items()
    }


def test_the_spec_holds_the_commands_for_its_interpreter(make_env: MakeEnv, model: ModelInfo) -> None:
    spec = spec_for(make_env, model, "uv")
    assert spec.entrypoint == (spec.python, "-m", contract.RUNTIME_MODULE)
    assert spec.healthcheck.command == (spec.python, "-m", f"{contract.RUNTIME_MODULE}.healthcheck")
    assert ("HOME", facts.USER_HOME) in spec.environment
