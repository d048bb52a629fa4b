"""Build wheels on the host: from an sdist only a pure-Python package has, or an MLflow checkout."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from kiln.env.tools import pip_command, run, tail
from kiln.errors import DependencyError, UsageError

# Zip timestamps from this epoch (1980-01-01, the earliest a zip can hold): the same source
# gives the same wheel bytes, so its hash in the lock stays valid across rebuilds.
_SOURCE_DATE_EPOCH = "315532800"


def build_wheel(source: Path, out_dir: Path, *, what: str) -> Path:
    """Build one wheel from ``source`` (an sdist file or a project directory) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kiln-wheel-", dir=out_dir) as tmp:
        command = [*pip_command(), "wheel", "--no-deps", "--quiet", "--wheel-dir", tmp, str(source)]
        env = dict(os.environ, SOURCE_DATE_EPOCH=_SOURCE_DATE_EPOCH)
        result = run(command, what=f"building a wheel of {what}", env=env)
        if result.returncode != 0:
            raise DependencyError(
                f"building a wheel of {what} from {source.name!r} on the host failed",
                hint=tail(result.stderr or result.stdout),
            )
        built = sorted(Path(tmp).glob("*.whl"))
        if len(built) != 1:
            raise DependencyError(f"building a wheel of {what} produced {len(built)} wheels, expected one")
        destination = out_dir / built[0].name
        built[0].replace(destination)
    return destination


def is_pure(wheel: Path) -> bool:
    """True for a wheel every Python 3 interpreter on any platform can install (``py3-none-any``)."""
    _name, _version, _build, tags = parse_wheel_filename(wheel.name)
    return all(t.platform == "any" and t.abi == "none" and t.interpreter.startswith("py") for t in tags)


def build_pure_wheel(sdist: Path, out_dir: Path, *, package: str, target: str) -> Path:
    """A wheel of ``sdist`` if it is pure Python; else DependencyError naming the package."""
    wheel = build_wheel(sdist, out_dir, what=package)
    if not is_pure(wheel):
        wheel.unlink()
        raise DependencyError(
            f"package {package} has no wheel for {target}, only a source distribution that builds "
            f"platform-specific code ({wheel.name}); kiln builds only pure-Python wheels on the host",
            hint=f"pin a version of {package} that publishes a manylinux wheel for {target}, "
            "or publish such a wheel to your index",
        )
    return wheel


def build_mlflow_home(mlflow_home: Path, out_dir: Path) -> Path:
    """A wheel of the MLflow checkout at ``mlflow_home`` (``--mlflow-home``), built on the host."""
    if not mlflow_home.is_dir():
        raise UsageError(
            f"--mlflow-home {str(mlflow_home)!r} is not a directory (expected an MLflow checkout)"
        )
    if not ((mlflow_home / "pyproject.toml").is_file() or (mlflow_home / "setup.py").is_file()):
        raise UsageError(
            f"--mlflow-home {str(mlflow_home)!r} has no pyproject.toml or setup.py "
            "(expected the root of an MLflow source checkout)"
        )
    wheel = build_wheel(mlflow_home, out_dir, what=f"MLflow from --mlflow-home {str(mlflow_home)!r}")
    name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
    if name not in ("mlflow", "mlflow-skinny"):
        raise UsageError(
            f"--mlflow-home {str(mlflow_home)!r} builds {wheel.name!r}, not mlflow or mlflow-skinny"
        )
    return wheel
