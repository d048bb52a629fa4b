"""What both backends' SBOM tests check: the document is valid CycloneDX 1.6 and lists exactly what the
image holds (every distribution in its environment, every installed Debian package, every model file)."""

from __future__ import annotations

import json
from typing import Any

from packaging.utils import canonicalize_name

from kiln import contract
from kiln.backends.docker.builder import DockerBuilder

LISTING = (
    "import importlib.metadata as m; "
    "print('\\n'.join(sorted(d.metadata['Name'] + ' ' + d.version for d in m.distributions())))"
)
DPKG_QUERY = ["dpkg-query", "-W", "-f", "${db:Status-Status} ${Package} ${Version}\\n"]


def in_image(docker_builder: DockerBuilder, tag: str, command: list[str], platform: str | None = None) -> str:
    """What ``command`` prints, run as root in a container of ``tag`` (another ``platform``: emulated)."""
    where = ["--platform", platform] if platform else []
    result = docker_builder.cli.run(
        ["run", "--rm", "--user", "0", *where, "--entrypoint", command[0], tag, *command[1:]], timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_valid(sbom: bytes) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom.decode()) is None


def assert_lists_the_image(
    docker_builder: DockerBuilder, tag: str, platform: str | None = None
) -> dict[str, Any]:
    """The SBOM at ``contract.SBOM_PATH`` in ``tag`` is valid and lists what the image holds; it, parsed."""

    def run(command: list[str]) -> str:
        return in_image(docker_builder, tag, command, platform)

    raw = run(["cat", contract.SBOM_PATH])
    assert_valid(raw.encode())
    sbom: dict[str, Any] = json.loads(raw)
    components = sbom["components"]
    python = {(c["name"], c["version"]) for c in components if c.get("purl", "").startswith("pkg:pypi/")}
    installed = run([f"{contract.VENV_DIR}/bin/python", "-c", LISTING])
    assert python == {
        (canonicalize_name(n), v) for n, v in (line.split(" ") for line in installed.splitlines())
    }
    assert all(c.get("hashes") for c in components if c.get("purl", "").startswith("pkg:pypi/"))
    debs = {(c["name"], c["version"]) for c in components if c.get("purl", "").startswith("pkg:deb/")}
    dpkg = {
        tuple(line.split(" ")[1:]) for line in run(DPKG_QUERY).splitlines() if line.startswith("installed ")
    }
    assert debs == dpkg and any(name == "nginx" for name, _ in debs)
    (model,) = [c for c in components if c["type"] == "machine-learning-model"]
    sums = run(["sh", "-c", f"find {contract.MODEL_DIR} -type f -exec sha256sum {{}} +"])
    files = {f["name"]: f["hashes"][0]["content"] for f in model["components"]}
    assert files == {path: digest for digest, path in (line.split() for line in sums.splitlines())}
    return sbom
