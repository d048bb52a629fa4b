"""``python -m kiln.runtime [serve]``: the image's entrypoint."""

from __future__ import annotations

import logging
import os
import sys

from kiln import contract
from kiln.errors import KilnError, UsageError

logger = logging.getLogger("kiln.runtime")

USAGE = f"usage: python -m {contract.RUNTIME_MODULE} [{contract.SERVE_ARGUMENT}]"


def main(argv: list[str]) -> int:
    """Check the arguments, read the settings from the environment, serve; returns the exit code."""
    try:
        _check_arguments(argv)
        from kiln.runtime import serve
        from kiln.runtime.logs import configure_logging
        from kiln.settings import RuntimeSettings

        settings = RuntimeSettings.from_env(os.environ)
        configure_logging(settings.log_level)
        return serve(settings)
    except KilnError as exc:
        print(f"Error: {exc.format()}", file=sys.stderr)
        if isinstance(exc, UsageError):
            print(USAGE, file=sys.stderr)
        return exc.exit_code


def _check_arguments(argv: list[str]) -> None:
    # SageMaker starts the container as `docker run IMAGE serve`; nothing else is accepted.
    extra = argv[1:] if argv[:1] == [contract.SERVE_ARGUMENT] else argv
    if extra:
        raise UsageError(
            f"unexpected argument {extra[0]!r}: the runtime accepts only "
            f"'{contract.SERVE_ARGUMENT}' (optional); configure it with environment variables "
            "such as KILN_PORT, KILN_WORKERS, KILN_REQUEST_TIMEOUT"
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
