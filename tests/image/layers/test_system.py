"""install_system_packages: real nginx .debs for bookworm, resolved by the host's apt against the test
base's real sources and dpkg status, unpacked on the host, then run inside the base image."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from tests.image.layers.venv_support import Layered, LayeredImage, RootDirectory, docker

from kiln.errors import BuildError
from kiln.image.layers.system import install_system_packages
from kiln.image.layers.users import add_runtime_user
from kiln.runtime.layout import RuntimeLayout
from kiln.runtime.nginx import nginx_command, nginx_config, render_nginx_conf
from kiln.settings import RuntimeSettings

pytest_plugins = ["tests.image.layers.venv_fixtures"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]


@dataclasses.dataclass(frozen=True)
class NginxTree:
    tree: Path
    cache: Path
    installed: tuple[str, ...]
    messages: tuple[str, ...]


@pytest.fixture(scope="session")
def nginx_tree(base_rootfs: RootDirectory, tmp_path_factory: pytest.TempPathFactory) -> NginxTree:
    """nginx for the base, fetched once per session into a session-wide .deb cache."""
    work = tmp_path_factory.mktemp("nginx")
    messages: list[str] = []
    installed = install_system_packages(
        work / "tree",
        packages=["nginx"],
        base=base_rootfs,
        arch="linux/amd64",
        cache_dir=work / "cache",
        image="kiln-test/python:3.11-slim",
        progress=messages.append,
    )
    return NginxTree(work / "tree", work / "cache", installed, tuple(messages))


def test_only_what_the_base_lacks_is_unpacked_and_recorded_for_dpkg(nginx_tree: NginxTree) -> None:
    names = [item.split("=")[0] for item in nginx_tree.installed]
    assert names[-1] == "nginx" and "nginx-common" in names
    assert not {"libc6", "libssl3", "zlib1g"} & set(names)  # in the base already: not fetched again
    tree = nginx_tree.tree
    assert (tree / "usr/sbin/nginx").stat().st_mode & 0o7777 == 0o755
    assert not (tree / "lib").exists() and not (tree / "bin").exists(), "merged-/usr links stay the base's"
    status = (tree / "var/lib/dpkg/status").read_text()
    assert "Package: nginx\nStatus: install ok installed\n" in status
    assert status.count("\nPackage: ") > 80  # the base's own packages are all still there
    assert "/usr/sbin/nginx\n" in (tree / "var/lib/dpkg/info/nginx.list").read_text()
    auto = (tree / "var/lib/apt/extended_states").read_text()
    assert "Package: nginx-common\nArchitecture: amd64\nAuto-Installed: 1\n" in auto
    assert "Package: nginx\n" not in auto


def test_nginx_runs_in_the_base_with_the_tree_layered_on_as_the_runtime_user(
    nginx_tree: NginxTree, base_rootfs: RootDirectory, layered_image: LayeredImage, tmp_path: Path
) -> None:
    users = tmp_path / "users"
    assert add_runtime_user(users, base=base_rootfs)
    tag = layered_image.build(nginx_tree.tree, users)
    layout = RuntimeLayout(Path("/tmp/kiln"))
    settings = RuntimeSettings.from_env({})
    conf = render_nginx_conf(nginx_config(settings, layout, workers=1, cpus=1, open_files=1024))
    command = " ".join(nginx_command("nginx", layout))
    script = (
        "set -e; id -un; nginx -v; mkdir -p /tmp/kiln/nginx; cat > /tmp/kiln/nginx.conf <<'EOF'\n"
        f"{conf}\nEOF\n{command} -t"
    )
    done = docker("run", "--rm", "--user", "10001:0", "--network", "none", tag, "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "kiln"
    assert "nginx version: nginx/1.22.1" in done.stderr
    assert "test is successful" in done.stderr


def test_dpkg_and_apt_in_the_image_see_a_consistent_system(
    nginx_tree: NginxTree, layered_image: LayeredImage
) -> None:
    tag = layered_image.build(nginx_tree.tree)
    script = (
        "set -e; test -L /lib && test -L /bin; dpkg --audit; dpkg --verify nginx nginx-common iproute2; "
        "apt-get check -q; dpkg-query -W -f '${Status} ${Version}\\n' nginx; apt-mark showauto"
    )
    done = docker("run", "--rm", "--network", "none", tag, "sh", "-c", script)
    assert done.returncode == 0, done.stdout + done.stderr
    version = dict(item.split("=", 1) for item in nginx_tree.installed)["nginx"]
    assert f"install ok installed {version}" in done.stdout
    assert "nginx-common" in done.stdout.splitlines()[-len(nginx_tree.installed) + 1 :]


def test_a_second_install_comes_from_the_cache(
    nginx_tree: NginxTree, base_rootfs: RootDirectory, tmp_path: Path
) -> None:
    assert any(message.startswith("apt: downloading") for message in nginx_tree.messages)
    messages: list[str] = []
    again = install_system_packages(
        tmp_path / "tree",
        packages=["nginx"],
        base=base_rootfs,
        arch="amd64",
        cache_dir=nginx_tree.cache,
        progress=messages.append,
    )
    assert again == nginx_tree.installed
    assert not any(message.startswith("apt: downloading") for message in messages)
    assert (tmp_path / "tree/usr/sbin/nginx").read_bytes() == (
        nginx_tree.tree / "usr/sbin/nginx"
    ).read_bytes()


def test_a_base_that_has_the_packages_needs_nothing(
    nginx_tree: NginxTree, base_rootfs: RootDirectory, tmp_path: Path
) -> None:
    with_nginx = Layered(base_rootfs, RootDirectory(nginx_tree.tree))
    installed = install_system_packages(
        tmp_path / "tree", packages=["nginx"], base=with_nginx, arch="amd64", cache_dir=tmp_path / "cache"
    )
    assert installed == ()
    assert not (tmp_path / "tree").exists() and not (tmp_path / "cache").exists()


def test_a_base_without_dpkg_is_refused_by_name(tmp_path: Path) -> None:
    root = tmp_path / "alpine"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('NAME="Alpine Linux"\nID=alpine\nPRETTY_NAME="Alpine Linux v3.20"\n')
    with pytest.raises(BuildError) as caught:
        install_system_packages(
            tmp_path / "tree", packages=["nginx"], base=RootDirectory(root), arch="amd64",
            cache_dir=tmp_path / "cache", image="alpine:3.20",
        )  # fmt: skip
    assert (
        "base image 'alpine:3.20' (Alpine Linux v3.20) is not Debian or Ubuntu with dpkg"
        in caught.value.message
    )
    assert "nginx" in caught.value.message and "--backend docker" in (caught.value.hint or "")


def test_a_package_the_base_release_does_not_have_is_apts_error(
    nginx_tree: NginxTree, base_rootfs: RootDirectory, tmp_path: Path
) -> None:
    with pytest.raises(BuildError) as caught:
        install_system_packages(
            tmp_path / "tree", packages=["kiln-no-such-package"], base=base_rootfs, arch="amd64",
            cache_dir=nginx_tree.cache, image="kiln-test/python:3.11-slim",
        )  # fmt: skip
    assert "for base image 'kiln-test/python:3.11-slim' failed" in caught.value.message
    assert "Unable to locate package kiln-no-such-package" in (caught.value.log_tail or "")
    shutil.rmtree(tmp_path / "tree", ignore_errors=True)


def test_install_java_gives_a_jre_on_path_with_the_systems_ca_keystore(
    nginx_tree: NginxTree, base_rootfs: RootDirectory, layered_image: LayeredImage, tmp_path: Path
) -> None:
    messages: list[str] = []
    installed = install_system_packages(
        tmp_path / "tree",
        packages=["nginx", "default-jre-headless"],
        base=base_rootfs,
        arch="amd64",
        cache_dir=nginx_tree.cache,
        progress=messages.append,
    )
    assert "default-jre-headless" in [item.split("=")[0] for item in installed]
    pems = [name for name in base_rootfs.listdir("/etc/ssl/certs") if name.endswith(".pem")]
    assert f"wrote /etc/ssl/certs/java/cacerts with {len(pems)} CA certificates" in messages
    tag = layered_image.build(tmp_path / "tree")
    check = (
        "public class T { public static void main(String[] a) throws Exception {"
        ' var f = javax.net.ssl.TrustManagerFactory.getInstance("PKIX");'
        " f.init((java.security.KeyStore) null);"
        " var manager = (javax.net.ssl.X509TrustManager) f.getTrustManagers()[0];"
        " System.out.println(manager.getAcceptedIssuers().length); } }"
    )
    script = (
        f"set -e; java -version; update-alternatives --query java | grep '^Value: '; "
        f"printf '%s' '{check}' > /tmp/T.java; java /tmp/T.java; /usr/lib/jvm/default-java/bin/java -version"
    )
    done = docker("run", "--rm", "--user", "10001:0", "--network", "none", tag, "sh", "-c", script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'openjdk version "17.' in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Value: /usr/lib/jvm/java-17-openjdk-amd64/bin/java"
    assert lines[1] == str(len(pems))  # Java's default trust store holds the system's CA certificates


def test_deb822_sources_with_signed_by_keys_from_the_base(
    nginx_tree: NginxTree, base_rootfs: RootDirectory, tmp_path: Path
) -> None:
    """The layout of the official python:X.Y-slim images: no sources.list, a debian.sources whose
    Signed-By names a keyring inside the base (copied out for the host's apt)."""
    upper = tmp_path / "upper"
    (upper / "etc/apt/sources.list.d").mkdir(parents=True)
    (upper / "etc/apt/sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    hidden = ("/etc/apt/sources.list", "/etc/apt/trusted.gpg.d")  # only the Signed-By key is trusted
    base = Layered(base_rootfs, RootDirectory(upper), hidden)
    installed = install_system_packages(
        tmp_path / "tree", packages=["nginx"], base=base, arch="amd64", cache_dir=nginx_tree.cache
    )
    assert installed == nginx_tree.installed

    missing = tmp_path / "missing"
    shutil.copytree(upper, missing)
    text = (missing / "etc/apt/sources.list.d/debian.sources").read_text()
    (missing / "etc/apt/sources.list.d/debian.sources").write_text(text.replace("keyring.gpg", "nokey.gpg"))
    with pytest.raises(BuildError, match=r"names the apt key /usr/share/keyrings/debian-archive-nokey\.gpg"):
        install_system_packages(
            tmp_path / "tree2", packages=["nginx"], base=Layered(base_rootfs, RootDirectory(missing), hidden),
            arch="amd64", cache_dir=nginx_tree.cache,
        )  # fmt: skip
