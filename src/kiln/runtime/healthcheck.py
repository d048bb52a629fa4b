"""``python -m kiln.runtime.healthcheck``: exit 0 when ``GET /ping`` on this container answers 200.

For the image's ``HEALTHCHECK``; standard library only, so it starts fast.
"""

from __future__ import annotations

import http.client
import os
import sys
import time
from collections.abc import Mapping

from kiln import contract, envvars
from kiln.errors import UsageError

TIMEOUT = 5.0


def ping(port: int, *, host: str = "127.0.0.1", timeout: float = TIMEOUT) -> tuple[bool, str]:
    """Whether ``GET http://host:port/ping`` answered 200, and what happened."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/ping")
        response = connection.getresponse()
        response.read()
    except OSError as exc:
        return False, f"GET http://{host}:{port}/ping failed: {exc}"
    finally:
        connection.close()
    return response.status == 200, f"GET http://{host}:{port}/ping answered {response.status}"


def wait_healthy(port: int, *, host: str, limit: float = 10.0, in_a_row: int = 20) -> bool:
    """Poll ``/ping`` (a new connection each time) until it answers 200 ``in_a_row`` times running
    (True) or ``limit`` seconds pass (False). After an nginx reload, an old worker may still take a
    connection for a few milliseconds: one 200 from a new worker does not mean they all proxy."""
    deadline = time.monotonic() + limit
    running = 0
    while time.monotonic() < deadline:
        running = running + 1 if ping(port, host=host, timeout=1.0)[0] else 0
        if running >= in_a_row:
            return True
        time.sleep(0.01)
    return False


def probe_host(environ: Mapping[str, str]) -> str:
    """Where the server listens, as a client reaches it: the loopback for a wildcard address."""
    found = envvars.lookup(environ, contract.ENV_HOST)
    host = (found[1].strip() if found else "") or contract.HOST
    host = host.removeprefix("[").removesuffix("]")
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def main() -> int:
    found = envvars.lookup(os.environ, contract.ENV_PORT)
    port = contract.PORT
    if found is not None:
        try:
            port = envvars.parse_int(found[0], found[1], minimum=1)
        except UsageError as exc:
            print(f"unhealthy: {exc.message}", file=sys.stderr)
            return 1
    healthy, message = ping(port, host=probe_host(os.environ))
    print(message, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
