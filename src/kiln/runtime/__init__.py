"""What runs in the container: the supervisor, nginx, the uvicorn workers.

``python -m kiln.runtime [serve]`` is the image's entrypoint; ``serve(settings)`` is
the same thing as a function (``kiln serve`` uses it on the host).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiln.settings import RuntimeSettings


def serve(settings: RuntimeSettings) -> int:
    """Serve the model in ``settings.model_dir`` until SIGTERM/SIGINT; returns the exit code.

    Checks the model, starts nginx (unless ``disable_nginx``) and the workers, and
    blocks. Must be called from the main thread (it handles signals). Raises a
    KilnError subclass when it cannot start.
    """
    # Imported here: the workers import this package too and need none of it.
    from kiln.runtime import plan, preflight, supervisor

    preflight.check_model(settings)
    return supervisor.run(plan.make_plan(settings))
