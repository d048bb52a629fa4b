"""Confirm, off the supervisor's loop, that nginx proxies to the workers after its reload.

nginx reloads asynchronously: for a few milliseconds its old workers (which answer 503 while
the model loads) may still take connections. The supervisor says ``ready`` only once ``/ping``
answers 200 many times in a row (``kiln.runtime.healthcheck.wait_healthy``). That poll can take
up to 10 s on a starved machine; run in the loop it would hold back signals and nginx's log
lines, so it runs in a thread, and a pipe wakes the loop when it is done.
"""

from __future__ import annotations

import os
import threading

from kiln.runtime import healthcheck


class ProxyCheck:
    """Polls ``/ping`` in a daemon thread; readable (``fileno``) once ``healthy`` is known."""

    def __init__(self, port: int, host: str, limit: float = 10.0) -> None:
        self.healthy: bool | None = None
        self._read, self._write = os.pipe()
        self._thread = threading.Thread(
            target=self._run, args=(port, host, limit), name="kiln-proxy-check", daemon=True
        )
        self._thread.start()

    def _run(self, port: int, host: str, limit: float) -> None:
        try:
            self.healthy = healthcheck.wait_healthy(port, host=host, limit=limit)
        finally:
            os.write(self._write, b"x")

    def fileno(self) -> int:
        return self._read

    def close(self) -> None:
        """After the pipe said it is done (the thread has finished writing)."""
        self._thread.join()
        os.close(self._read)
        os.close(self._write)
