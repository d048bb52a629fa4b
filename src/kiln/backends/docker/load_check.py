"""The build-time check that the model loads in the image it was built into.

``docker run`` of the image's own interpreter on ``mlflow.pyfunc.load_model`` — no network, read-only,
as the image's user — so a library the model cannot import (a missing shared library, a wrong
wheel, an import error in its code) fails the build with the model's own error instead of the first
deployment. It loads the model once, as a worker does at start; it does not start the server or
score (``--smoke-test`` does that). Skip it with ``--no-load-check``.
"""

from __future__ import annotations

import time

from kiln import contract
from kiln.backends.docker.cli import DockerCli
from kiln.errors import BuildError

LOAD_CODE = (
    "import sys; import mlflow.pyfunc; mlflow.pyfunc.load_model(sys.argv[1]); print('kiln: the model loaded')"
)
DEFAULT_TIMEOUT = 600.0


def check_model_loads(cli: DockerCli, image: str, python: str, *, timeout: float = DEFAULT_TIMEOUT) -> float:
    """Load the model baked into ``image`` with its interpreter ``python``; seconds taken.

    BuildError with the end of the model's own traceback when it does not load.
    """
    started = time.monotonic()
    args = [
        "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
        "--entrypoint", python, image, "-c", LOAD_CODE, contract.MODEL_DIR,
    ]  # fmt: skip
    result = cli.run(args, timeout=timeout)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip()
        last = said.splitlines()[-1] if said else f"exit status {result.returncode}"
        raise BuildError(
            f"the model does not load in the image it was built into ({image}): {last}",
            log_tail=said[-3000:] or None,
            hint="a missing system library can be added with --system-package NAME; "
            "--no-load-check skips this check",
        )
    return time.monotonic() - started
