"""Security of a running image: users, ports, the model directory, what nginx and the app disclose, secrets.

tests/e2e/test_image.py already checks the image config (USER 10001:0), an arbitrary
``--user`` with a read-only root, the model's ownership as seen by a shell, and a
token from ``PIP_EXTRA_INDEX_URL`` in no layer; these add what a running container
shows. The tests record their findings for docs/reliability.md (see tests/trials.py).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from tests.docker_support import assert_not_in_image
from tests.e2e.conftest import Built, Images
from tests.e2e.containers import Container, container
from tests.env.conftest import PackageIndex
from tests.trials import record_trial

from kiln import contract
from kiln.backends.docker.builder import DockerBuilder

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RecordProperty = Callable[[str, object], None]
AREA = "image security"
SECRET = f"kiln-sec-{uuid.uuid4().hex[:12]}"
"""Shared by every token of the build below, so one scan of the image finds any of them."""
NGINX_VERSION = re.compile(rb"nginx/\d")
ROWS = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})


@pytest.fixture(scope="module")
def raises_image(
    images: Images,
    model_dir: Callable[[str], Path],
    token_index: PackageIndex,
    tmp_path_factory: pytest.TempPathFactory,
) -> Built:
    """predict_raises, built with credentials in play: a token in an index URL of a pip config
    file (next to the host's own indexes) and a tracking token in the environment."""
    here = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.extra-index-url"],
        capture_output=True,
        text=True,
    )
    existing = here.stdout.strip() if here.returncode == 0 else ""
    config = tmp_path_factory.mktemp("pip-config") / "pip.conf"
    config.write_text(f"[global]\nextra-index-url = {token_index.url(f'ci:{SECRET}-pipconf')} {existing}\n")
    env = {"PIP_CONFIG_FILE": str(config), "MLFLOW_TRACKING_TOKEN": f"{SECRET}-tracking"}
    return images.build("predict-raises", "-m", str(model_dir("predict_raises")), env=env)


@pytest.fixture(scope="module")
def hardened(docker_builder: DockerBuilder, raises_image: Built) -> Iterator[Container]:
    """The image run as it is built: default user, writable root filesystem."""
    with container(docker_builder.cli, raises_image.tag) as running:
        running.wait_ready()
        yield running


def test_every_process_runs_as_non_root(hardened: Container, record_property: RecordProperty) -> None:
    # Name, then the real, effective, saved and filesystem UIDs of every process (this script's too).
    script = 'for s in /proc/[0-9]*/status; do echo "$(grep ^Name: $s | cut -f2) $(grep ^Uid: $s | cut -f2-)"; done'  # noqa: E501
    lines = hardened.docker("exec", hardened.name, "sh", "-c", script).stdout.splitlines()
    processes = [line.split() for line in lines if len(line.split()) == 5]
    # The supervisor is "python"; the zygote and the workers it forks name themselves.
    kiln = [fields[0] for fields in processes if fields[0] in ("python", "kiln-zygote", "kiln-worker")]
    nginx = [fields[0] for fields in processes if fields[0] == "nginx"]
    uids = sorted({int(uid) for fields in processes for uid in fields[1:]})
    record_trial(
        record_property,
        area=AREA,
        scenario="the processes of a running container (docker run IMAGE, no --user)",
        attempts=len(processes),
        outcome=f"{len(kiln)} kiln ({', '.join(sorted(set(kiln)))}) and {len(nginx)} nginx processes, "
        f"plus the probe's own: every real, effective, saved and filesystem UID is {uids}",
    )
    assert "python" in kiln and "kiln-worker" in kiln and len(nginx) >= 2, lines
    assert len(processes) == len(lines), lines
    assert uids == [contract.UID], lines


def test_only_port_8080_listens(hardened: Container, record_property: RecordProperty) -> None:
    tables = {
        name: hardened.docker("exec", hardened.name, "cat", f"/proc/net/{name}").stdout
        for name in ("tcp", "tcp6", "udp", "udp6")
    }
    listening = sorted({(name, port) for name, text in tables.items() for port in _bound_ports(name, text)})
    record_trial(
        record_property,
        area=AREA,
        scenario="sockets bound inside a running container (/proc/net/tcp, tcp6, udp, udp6)",
        attempts=sum(len(text.splitlines()) - 1 for text in tables.values()),
        outcome=f"listening: {', '.join(f'{name}:{port}' for name, port in listening)}; "
        "the workers listen on a unix socket",
    )
    assert listening == [("tcp", contract.PORT)], listening


def test_the_model_directory_is_read_only_at_run_time(
    hardened: Container, record_property: RecordProperty
) -> None:
    model = contract.MODEL_DIR
    attempts = {
        "create a file": f"touch {model}/planted",
        "overwrite MLmodel": f"echo x > {model}/MLmodel",
        "delete MLmodel": f"rm -f {model}/MLmodel",
        "rename the model": f"mv {model} {model}.old",
        "change modes": f"chmod -R a+w {model}",
    }
    results = {
        what: hardened.docker("exec", hardened.name, "sh", "-c", script) for what, script in attempts.items()
    }
    refused = [what for what, result in results.items() if result.returncode != 0]
    record_trial(
        record_property,
        area=AREA,
        scenario=f"writes to {model} as the runtime user, in a running container",
        attempts=len(attempts),
        outcome=f"{len(refused)} of {len(attempts)} refused ({', '.join(refused)})",
    )
    assert refused == list(attempts), {what: r.stderr for what, r in results.items()}
    assert hardened.docker("exec", hardened.name, "test", "-s", f"{model}/MLmodel").returncode == 0


def test_no_stack_trace_reaches_a_client_by_default(
    hardened: Container, record_property: RecordProperty
) -> None:
    answers = [
        hardened.post(ROWS),  # predict raises ValueError
        hardened.post("{not json"),
        hardened.post(ROWS, "text/csv"),
        hardened.post("[1, 2]"),
    ]
    bodies = [a.text for a in answers]
    record_trial(
        record_property,
        area=AREA,
        scenario="requests that fail inside predict and in parsing (KILN_EXPOSE_TRACEBACKS unset)",
        attempts=len(answers),
        outcome=f"statuses {[a.status_code for a in answers]}; no stack trace in any body; "
        "the model's traceback is in the log",
    )
    assert [a.status_code for a in answers] == [400, 400, 400, 400]
    assert "deliberate error from predict" in answers[0].json()["message"]
    for body in bodies:
        assert "Traceback" not in body and "stack_trace" not in body and ".py" not in body, body
    assert "Traceback (most recent call last)" in hardened.logs()


def test_nginx_does_not_say_its_version(hardened: Container, record_property: RecordProperty) -> None:
    host, port = hardened.url.removeprefix("http://").rsplit(":", 1)
    requests = {
        "GET /ping": b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "404": b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "body over the limit": b"POST /invocations HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n",
        "malformed request line": b"GET /\x01 HTTP/9.9\r\n\r\n",
        "URI too long": b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "header too large": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n",
    }
    answers = {what: _raw(host, int(port), raw) for what, raw in requests.items()}
    assert all(answers.values()), [what for what, answer in answers.items() if not answer]
    statuses = {what: answer.split(b" ", 2)[1].decode() for what, answer in answers.items()}
    servers = {
        m.group(0).decode().strip() for a in answers.values() for m in re.finditer(rb"(?im)^server:.*$", a)
    }
    leaks = [what for what, answer in answers.items() if NGINX_VERSION.search(answer)]
    record_trial(
        record_property,
        area=AREA,
        scenario="nginx's own answers and error pages: " + ", ".join(requests),
        attempts=len(requests),
        outcome=f"statuses {sorted(set(statuses.values()))}; Server headers {sorted(servers)}; "
        f"{len(leaks)} with a version",
    )
    assert not leaks, {what: answers[what][:300] for what in leaks}
    assert statuses["body over the limit"] == "413"
    assert servers == {"Server: nginx"}


def test_read_only_root_and_tracebacks_when_asked(
    docker_builder: DockerBuilder, raises_image: Built, record_property: RecordProperty
) -> None:
    args = ("--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777", "--env", "KILN_EXPOSE_TRACEBACKS=true")
    with container(docker_builder.cli, raises_image.tag, *args) as running:
        running.wait_ready()
        answer = running.post(ROWS)
        state = running.state()
    record_trial(
        record_property,
        area=AREA,
        scenario="docker run --read-only --tmpfs /tmp -e KILN_EXPOSE_TRACEBACKS=true",
        attempts=1,
        outcome=f"ready and answering; the failing predict got {answer.status_code} with "
        f"{'a' if 'stack_trace' in answer.json() else 'no'} stack_trace field",
    )
    assert state["Running"]
    assert answer.status_code == 400
    assert "Traceback (most recent call last)" in answer.json()["stack_trace"]


def test_no_credential_in_any_layer(
    docker_builder: DockerBuilder,
    raises_image: Built,
    token_index: PackageIndex,
    tmp_path: Path,
    record_property: RecordProperty,
) -> None:
    # The pip config's token really was in play: the host's resolver sent it to the index.
    sent = [base64.b64decode(a.split()[1]).decode() for a in token_index.authorizations if a]
    layers = assert_not_in_image(docker_builder, raises_image.tag, SECRET, tmp_path)
    record_trial(
        record_property,
        area=AREA,
        scenario="docker save, then every file and file name of every layer, the config and the history "
        "searched for a pip-config index token and MLFLOW_TRACKING_TOKEN",
        attempts=layers,
        outcome=f"{layers} layers scanned, 0 hits "
        f"(the index received the token {sent.count(f'ci:{SECRET}-pipconf')} times during the build)",
    )
    assert f"ci:{SECRET}-pipconf" in sent, token_index.authorizations[:5]


def _bound_ports(table: str, text: str) -> set[int]:
    """Local ports of listening TCP sockets (state 0A) or bound UDP sockets in a /proc/net table."""
    ports = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if table.startswith("tcp") and state != "0A":
            continue
        ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def _raw(host: str, port: int, request: bytes) -> bytes:
    """Send ``request`` as is; read the answer (head and Content-Length bytes), or all before a close."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        with suppress(TimeoutError, ConnectionResetError):
            while b"\r\n\r\n" not in answer or len(answer) < _expected_length(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
    return answer


def _expected_length(answer: bytes) -> int:
    head, _, _ = answer.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return len(head) + 4 + (int(found.group(1)) if found else 0)
