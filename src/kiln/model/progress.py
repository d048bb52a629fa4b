"""Download progress: the bytes that have arrived in the destination, shown on a terminal.

MLflow's downloaders run in its own thread pool and report nothing byte-wise for most
stores, so kiln watches the destination directory instead: what it shows is what is on disk.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.filesize import decimal as _human  # the units of rich's speed column: kB, MB

logger = logging.getLogger(__name__)

_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Downloaded:
    """What is under a directory: bytes on disk and regular files."""

    size: int
    files: int


def downloaded(root: Path) -> Downloaded:
    """Count the bytes written so far (sparse, preallocated chunked downloads count what is there)."""
    size = files = 0
    for directory, _, names in os.walk(root):
        for name in names:
            try:
                stat = os.stat(os.path.join(directory, name), follow_symlinks=False)
            except OSError:  # a file MLflow is renaming or removing right now
                continue
            files += 1
            size += min(stat.st_size, getattr(stat, "st_blocks", stat.st_size // 512 + 1) * 512)
    return Downloaded(size=size, files=files)


@contextmanager
def download_progress(dest: Path, *, label: str, enabled: bool | None) -> Iterator[None]:
    """Show a live byte counter for ``dest`` while the block runs; log a summary after it.

    ``enabled``: True shows it, False hides it, None shows it when stderr is a terminal.
    """
    show = sys.stderr.isatty() if enabled is None else enabled
    started = time.monotonic()
    if show:
        with _live_counter(dest, label):
            yield
    else:
        yield
    total = downloaded(dest)
    logger.info(
        "Downloaded %s (%d files) from %s in %.1f s",
        _human(total.size),
        total.files,
        label,
        time.monotonic() - started,
    )


@contextmanager
def _live_counter(dest: Path, label: str) -> Iterator[None]:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

    # The total is unknown (listing every file first would cost a request per directory).
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[done]}"))
    stop = threading.Event()
    with Progress(*columns, TransferSpeedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"Downloading {label}", total=None, done=_human(0))

        def watch() -> None:
            while not stop.wait(_POLL_SECONDS):
                size = downloaded(dest).size
                bar.update(task, completed=size, done=_human(size))

        watcher = threading.Thread(target=watch, name="kiln-download-progress", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()
