"""Image references parsed as Docker parses them; which registries speak plain HTTP."""

from __future__ import annotations

import pytest

from kiln.errors import UsageError
from kiln.oci.registry import parse_reference
from kiln.oci.registry.transport import uses_plain_http

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("python:3.11-slim", "registry-1.docker.io", "library/python", "3.11-slim", None),
        ("python", "registry-1.docker.io", "library/python", "latest", None),
        ("docker.io/python", "registry-1.docker.io", "library/python", "latest", None),
        ("index.docker.io/team/app:1", "registry-1.docker.io", "team/app", "1", None),
        ("team/app", "registry-1.docker.io", "team/app", "latest", None),
        ("127.0.0.1:5000/team/model:1", "127.0.0.1:5000", "team/model", "1", None),
        ("localhost/model", "localhost", "model", "latest", None),
        ("localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest", None),
        (f"registry.example.com/x@{DIGEST}", "registry.example.com", "x", None, DIGEST),
        (f"registry.example.com/x:v2@{DIGEST}", "registry.example.com", "x", "v2", DIGEST),
        ("[::1]:5000/model:1", "[::1]:5000", "model", "1", None),
        ("ghcr.io/org/my_model.v2__x-y:TAG_1.0-rc", "ghcr.io", "org/my_model.v2__x-y", "TAG_1.0-rc", None),
        ("Registry/model", "Registry", "model", "latest", None),  # capitals: a host name, as Docker says
    ],
)
def test_references_parse_like_docker(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert parse_reference(str(ref)) == ref


def test_a_reference_knows_its_target_and_name() -> None:
    ref = parse_reference(f"127.0.0.1:5000/team/model:1@{DIGEST}")
    assert (ref.name, ref.target) == ("127.0.0.1:5000/team/model", DIGEST)
    assert parse_reference("127.0.0.1:5000/team/model:1").with_digest(DIGEST) == ref


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty or surrounded by spaces"),
        (" python", "empty or surrounded by spaces"),
        ("Python:3", "repository name 'Python' must be lowercase"),
        ("team/App", "repository name 'team/App' must be lowercase"),
        ("python:", "tag '' must be 1-128 letters"),
        ("python:-x", "tag '-x' must be 1-128 letters"),
        ("python@sha256:abc", "digest 'sha256:abc' is not 'sha256:' followed by 64 lowercase hex digits"),
        ("a//b", "repository part '' must be lowercase letters and digits"),
        ("team/-app", "repository part '-app' must be lowercase letters"),
        ("bad_host.com:x/app", "registry 'bad_host.com:x' is not HOST[:PORT]"),
        ("127.0.0.1:5000/", "no repository name"),
    ],
)
def test_invalid_references_say_what_is_wrong_and_expected(text: str, why: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_reference(text)
    assert caught.value.message.startswith(f"invalid image reference {text!r}: ")
    assert why in caught.value.message


def test_the_reference_error_names_the_expected_form() -> None:
    with pytest.raises(
        UsageError, match=r"expected \[REGISTRY\[:PORT\]/\]REPOSITORY\[:TAG\]\[@sha256:DIGEST\]"
    ):
        parse_reference("a//b")


@pytest.mark.parametrize(
    ("registry", "env", "plain"),
    [
        ("127.0.0.1:5000", "", True),
        ("127.8.9.10", "", True),
        ("localhost:5000", "", True),
        ("[::1]:5000", "", True),
        ("registry.example.com", "", False),
        ("10.0.0.5:5000", "", False),
        ("10.0.0.5:5000", "10.0.0.5:5000", True),
        ("10.0.0.5:5000", "other:1, 10.0.0.5", True),  # a host entry covers its every port
        ("10.0.0.5:5000", "10.0.0.5:6000", False),
    ],
)
def test_plain_http_for_loopback_and_listed_registries(registry: str, env: str, plain: bool) -> None:
    assert uses_plain_http(registry, {"KILN_INSECURE_REGISTRIES": env}) is plain
