"""Run kiln's scoring app for the model in ``$KILN_MODEL_DIR`` on a free port (a test helper).

Settings come from the environment (``RuntimeSettings.from_env``). Prints ``PORT <n>``
once the model is loaded and uvicorn is about to accept; exits 3 if the app never starts.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

import uvicorn

from kiln.server.app import create_app
from kiln.settings import RuntimeSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    settings = RuntimeSettings.from_env(os.environ)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue until uvicorn accepts: no refusal between PORT and accept
    port = sock.getsockname()[1]

    def ready() -> None:
        print(f"PORT {port}", flush=True)

    app = create_app(settings, on_ready=ready)
    config = uvicorn.Config(app=app, loop="uvloop", http="httptools", log_level="info", lifespan="on")
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 3


if __name__ == "__main__":
    sys.exit(main())
