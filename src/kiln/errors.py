"""kiln's exceptions: one root, each error knows its message and exit code.

The tree::

    KilnError                      exit 1: anything kiln reports to a user
    ├── UsageError                 exit 2: a bad option, setting or environment variable value
    ├── ModelError                 the model directory or URI is not a servable MLflow model
    │   └── ModelURIError          a model URI cannot be resolved or downloaded (names the URI
    │                              and the tracking server or registry)
    ├── DependencyError            requirements cannot be read, resolved, locked or fetched
    ├── BuildError                 an image could not be built, run or inspected
    │   └── DockerUnavailableError no Docker engine answers (says how to start one)
    ├── RegistryError              a registry refused or failed a pull or push (names the
    │                              registry, repository, operation, HTTP status and the
    │                              registry's error code; never a credential)
    ├── ServeError                 the runtime could not start or stopped abnormally
    └── ScoringError               a request to the scoring server failed; carries the HTTP
                                   status and the MLflow ``error_code`` for the JSON body

Messages say what failed, the offending value and what was expected. Raise with
``raise ... from exc`` so that ``--debug`` can show the cause.
"""

from __future__ import annotations


class KilnError(Exception):
    """Root of every error kiln reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def format(self) -> str:
        """The text the CLI shows after ``Error: ``."""
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(KilnError):
    """A bad option, setting or environment variable value."""

    exit_code = 2


class ModelError(KilnError):
    """The model directory or URI is not a servable MLflow model."""


class ModelURIError(ModelError):
    """A model URI cannot be resolved or downloaded; the message names the URI and the server."""


class DependencyError(KilnError):
    """Requirements cannot be read, resolved, locked or fetched."""


class BuildError(KilnError):
    """An image could not be built, run or inspected."""

    def __init__(self, message: str, *, hint: str | None = None, log_tail: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail

    def format(self) -> str:
        text = super().format()
        if self.log_tail:
            text += "\n  last lines of the log:\n" + "\n".join(
                "    " + line for line in self.log_tail.rstrip().splitlines()
            )
        return text


class DockerUnavailableError(BuildError):
    """No Docker engine answers on the configured host."""


class RegistryError(KilnError):
    """A registry refused or failed an operation (pull, push, auth); says which and why.

    ``status`` is the HTTP status when the registry answered (None for a connection or
    protocol failure) and ``code`` the registry's own error code (``NAME_UNKNOWN``,
    ``UNAUTHORIZED``, ...) when its body carried one.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        registry: str | None = None,
        repository: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.registry = registry
        self.repository = repository
        self.status = status
        self.code = code


class ServeError(KilnError):
    """The runtime could not start, or stopped abnormally."""


class ScoringError(KilnError):
    """A scoring request failed; rendered as ``{"error_code": ..., "message": ...}``."""

    def __init__(self, message: str, *, status: int = 400, error_code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
