"""The image ABI: ports, paths, environment variable names, labels and the entrypoint.

This is the one place both sides read: the builder (image/, backends/) writes
images that honour it, and the runtime (runtime/, server/) serves by it. Change a
value here and both sides move together. Nothing in this module imports anything
beyond the standard library, so the runtime can import it inside any image.
"""

from __future__ import annotations

from typing import Literal

# --- network -----------------------------------------------------------------
PORT = 8080
"""The port the container serves on (nginx, or uvicorn when nginx is disabled)."""

HOST = "0.0.0.0"
"""The address the container listens on: every interface. ``kiln serve`` on a host listens on
LOCAL_HOST instead unless told otherwise (KILN_HOST / --host)."""

LOCAL_HOST = "127.0.0.1"

# --- paths inside the image ----------------------------------------------------
MODEL_DIR = "/opt/ml/model"
"""Where the model lives: baked in (model-inclusive) or mounted (model-agnostic)."""

KILN_HOME = "/opt/kiln"
"""kiln's own files in the image: the environment, the lock, the wheelhouse record."""

VENV_DIR = f"{KILN_HOME}/venv"
"""The isolated Python environment for the virtualenv and uv env managers."""

CONDA_ENV_DIR = f"{KILN_HOME}/conda-env"
"""The unpacked conda environment for the conda env manager."""

LOCK_PATH = f"{KILN_HOME}/requirements.lock"
"""The full lock (with hashes) the environment was installed from."""

SBOM_PATH = f"{KILN_HOME}/sbom.cdx.json"
"""The image's CycloneDX SBOM, written by both backends (docs/building.md, "SBOM and provenance")."""

INSTALLER_DIR = f"{KILN_HOME}/installer"
"""Model-agnostic images: the installer wheel (pip or uv) kept for the opt-in install at start."""

RUNTIME_DIR = "/tmp/kiln"
"""The only directory the runtime writes to: nginx.conf, sockets, nginx temp files."""

# --- the user the image runs as ---------------------------------------------------
UID = 10001
GID = 0
"""Group 0 owns writable paths, so an arbitrary ``--user UID`` (OpenShift) still works."""

USER_NAME = "kiln"

# --- the entrypoint ------------------------------------------------------------------
RUNTIME_MODULE = "kiln.runtime"
"""``python -m kiln.runtime [serve]`` is the image's entrypoint."""

SERVE_ARGUMENT = "serve"
"""SageMaker starts containers as ``docker run IMAGE serve``."""

STOP_SIGNAL = "SIGTERM"

# --- environment variables -----------------------------------------------------------
# Each setting has kiln's own name and, where MLflow users already set one, MLflow's
# name too; both are honoured and kiln's wins when both are set.
ENV_HOST = ("KILN_HOST", "MLFLOW_HOST")
ENV_PORT = ("KILN_PORT", "PORT")
ENV_WORKERS = ("KILN_WORKERS", "MLFLOW_MODELS_WORKERS")
ENV_REQUEST_TIMEOUT = ("KILN_REQUEST_TIMEOUT", "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT")
ENV_DISABLE_NGINX = ("KILN_DISABLE_NGINX", "DISABLE_NGINX")
ENV_MODEL_CONFIG = ("KILN_MODEL_CONFIG", "SERVING_MODEL_CONFIG")
ENV_MODEL_DIR = ("KILN_MODEL_DIR",)
ENV_RUNTIME_DIR = ("KILN_RUNTIME_DIR",)
ENV_MAX_BODY_SIZE = ("KILN_MAX_BODY_SIZE",)
ENV_MAX_HEADER_SIZE = ("KILN_MAX_HEADER_SIZE",)
"""The request line and headers together; larger get 431."""
ENV_CLIENT_TIMEOUT = ("KILN_CLIENT_TIMEOUT",)
"""Seconds a client has to send a request head, and a body may pause, before the connection is closed."""
ENV_GRACE_PERIOD = ("KILN_GRACE_PERIOD",)
ENV_METRICS = ("KILN_METRICS",)
ENV_OPENAPI = ("KILN_OPENAPI",)
"""``/openapi.json`` and the ``/docs`` page describing the served model (on by default)."""
ENV_EXPOSE_TRACEBACKS = ("KILN_EXPOSE_TRACEBACKS",)
ENV_LOG_LEVEL = ("KILN_LOG_LEVEL",)
ENV_MAX_QUEUE = ("KILN_MAX_QUEUE",)
"""Scoring requests one worker holds at once (being predicted or waiting); more get 503 at once."""
ENV_INSTALL_MISSING = ("KILN_INSTALL_MISSING_REQUIREMENTS",)
"""Model-agnostic images: opt in to installing a mounted model's missing packages at start."""
ENV_MODEL_AGNOSTIC = ("KILN_MODEL_AGNOSTIC",)
"""Set to ``true`` by kiln in model-agnostic images: the runtime checks a mounted model's
requirements against the installed environment before loading it."""
ENV_ACCELERATOR = ("KILN_ACCELERATOR",)
"""``cuda`` in CUDA images: one worker per visible GPU, each pinned to its own (``cpu`` otherwise)."""
ENV_PRELOAD_MODEL = ("KILN_PRELOAD_MODEL",)
"""``auto`` (default): load the model once and fork the workers from it unless that is unsafe;
``on``: always; ``off``: each worker loads the model itself."""
ENV_NGINX_BINARY = ("KILN_NGINX_BINARY",)
"""The nginx executable to run; unset: ``nginx`` on $PATH, then /usr/sbin/nginx."""
ENV_V2 = ("KILN_V2",)
"""The Open Inference Protocol v2 endpoints under ``/v2`` (on by default)."""
ENV_V2_MODEL_NAME = ("KILN_V2_MODEL_NAME", "MLSERVER_MODEL_NAME")
"""The model's name in ``/v2/models/{name}``; MLServer's variable, which KServe sets, is honoured."""
ENV_V2_MODEL_VERSION = ("KILN_V2_MODEL_VERSION", "MLSERVER_MODEL_VERSION")
ENV_MAX_BATCH_SIZE = ("KILN_MAX_BATCH_SIZE",)
"""Most ``/invocations`` requests one worker combines into one ``predict`` call; 1 (default): no batching."""
ENV_MAX_BATCH_DELAY = ("KILN_MAX_BATCH_DELAY",)
"""Milliseconds a request that arrives while its worker is predicting may wait for more to join its batch."""
DEFAULT_V2_MODEL_NAME = "mlflow-model"
"""The name ``mlflow models serve --enable-mlserver`` gave the model (MLServerDefaultModelName)."""

DEFAULT_REQUEST_TIMEOUT = 60.0
DEFAULT_MAX_BODY_SIZE = 100 * 1024 * 1024
DEFAULT_MAX_HEADER_SIZE = 32 * 1024
"""nginx's default ``large_client_header_buffers 4 8k``."""
DEFAULT_CLIENT_TIMEOUT = 10
DEFAULT_GRACE_PERIOD = 25.0
"""Below Kubernetes' default 30 s termination grace; use ``docker stop -t 30``."""
DEFAULT_MAX_QUEUE = 64
"""Per worker; 0 turns the limit off. How it was chosen: docs/scoring.md, "Overload"."""
DEFAULT_MAX_BATCH_SIZE = 1
"""No batching unless asked for: combining requests is only right for models that predict row by row."""
DEFAULT_MAX_BATCH_DELAY = 2.0
"""Milliseconds; only requests that find the worker busy wait, so an idle worker adds no delay."""

# --- labels ------------------------------------------------------------------------------
LABEL_PREFIX = "io.kiln"
LABEL_VERSION = f"{LABEL_PREFIX}.version"
LABEL_MODEL_URI = f"{LABEL_PREFIX}.model.uri"
LABEL_MODEL_RUN_ID = f"{LABEL_PREFIX}.model.run-id"
LABEL_MODEL_NAME = f"{LABEL_PREFIX}.model.name"
LABEL_MODEL_VERSION = f"{LABEL_PREFIX}.model.version"
LABEL_MODEL_SOURCE = f"{LABEL_PREFIX}.model.source"
LABEL_MODEL_SIGNATURE = f"{LABEL_PREFIX}.model.signature"
LABEL_MODEL_FLAVORS = f"{LABEL_PREFIX}.model.flavors"
LABEL_ENV_MANAGER = f"{LABEL_PREFIX}.env-manager"
LABEL_LOCK_DIGEST = f"{LABEL_PREFIX}.lock.digest"
LABEL_PYTHON_VERSION = f"{LABEL_PREFIX}.python.version"
LABEL_MODEL_AGNOSTIC = f"{LABEL_PREFIX}.model-agnostic"
LABEL_SYSTEM_PACKAGES = f"{LABEL_PREFIX}.system-packages"
"""The Debian packages kiln added to the base: nginx, a JRE, --system-package, native-library needs."""
LABEL_MAX_BATCH_SIZE = f"{LABEL_PREFIX}.max-batch-size"
"""Set when the build baked ``KILN_MAX_BATCH_SIZE`` into the image (``kiln build --max-batch-size``)."""
LABEL_MAX_BATCH_DELAY = f"{LABEL_PREFIX}.max-batch-delay"
LABEL_ACCELERATOR = f"{LABEL_PREFIX}.accelerator"
"""``cpu`` or ``cuda``: whose builds of accelerated packages the environment holds."""

# --- choices -------------------------------------------------------------------------------
EnvManager = Literal["virtualenv", "uv", "conda", "local"]
ENV_MANAGERS: tuple[EnvManager, ...] = ("virtualenv", "uv", "conda", "local")
DEFAULT_ENV_MANAGER: EnvManager = "virtualenv"

# --- what the runtime needs inside the image -----------------------------------------------
RUNTIME_REQUIREMENTS: tuple[str, ...] = (
    "starlette>=0.37",
    "uvicorn>=0.30",
    "httptools>=0.6",
    "uvloop>=0.19",
    "orjson>=3.9",
    "prometheus-client>=0.17",
    "jinja2>=3.1",
    "pyyaml>=6",
    "packaging>=23",
)
"""Installed next to the model's own requirements; MLflow itself comes from the model's."""
