"""An MLflow scikit-learn model whose conda.yaml takes its scientific stack from a conda channel."""

from __future__ import annotations

from pathlib import Path

CONDA_SPECS = ["python=3.11.2", "pip", "numpy", "scipy", "scikit-learn", "pandas", "cloudpickle"]
"""What the test channel has (``tests.conda_channel.build``); MLflow and skops stay in the pip section."""


def save_conda_model(dest: Path, channel: str, *, c: float = 1.0, specs: list[str] | None = None) -> Path:
    """LogisticRegression on iris saved by MLflow; its conda.yaml names ``channel`` and ``specs``."""
    from importlib.metadata import version

    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris(as_frame=True)
    model = LogisticRegression(C=c, max_iter=500).fit(iris.data, iris.target)
    conda_env = {
        "name": "mlflow-env",
        "channels": [channel],
        "dependencies": [
            *(specs if specs is not None else CONDA_SPECS),
            {"pip": [f"mlflow=={version('mlflow')}", f"skops=={version('skops')}"]},
        ],
    }
    signature = infer_signature(iris.data, model.predict(iris.data))
    mlflow.sklearn.save_model(model, str(dest), signature=signature, conda_env=conda_env)
    return dest


NO_PYTHON_BASE = "kiln-test/debian:bookworm-nopython"
"""The test base (kiln-test/python:3.11-slim) with its Python removed; kept between sessions."""
_NO_PYTHON_DOCKERFILE = """FROM kiln-test/python:3.11-slim
RUN rm -rf /usr/local/bin/python* /usr/bin/python3* /usr/lib/python3* /usr/lib/python3.* \\
 && ! command -v python3 && ! command -v python
"""


def ensure_no_python_base(docker: str) -> str:
    """Make NO_PYTHON_BASE with ``docker build`` (a Dockerfile on stdin, no context) unless it exists."""
    import subprocess

    if subprocess.run([docker, "image", "inspect", NO_PYTHON_BASE], capture_output=True).returncode == 0:
        return NO_PYTHON_BASE
    made = subprocess.run(
        [docker, "build", "-t", NO_PYTHON_BASE, "-"], input=_NO_PYTHON_DOCKERFILE, text=True,
        capture_output=True, timeout=600, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        raise RuntimeError(f"could not make {NO_PYTHON_BASE}: {made.stderr[-2000:]}")
    return NO_PYTHON_BASE
