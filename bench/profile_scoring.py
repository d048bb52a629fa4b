"""In-process profile of one scoring request: MLflow's ``invocations`` against kiln's stages.

No HTTP: it times, per request and best of several rounds, MLflow's own
``scoring_server.invocations`` and kiln's parse -> predict -> serialise (with and without
the fast path), then each kiln stage and the flavour's bare predict, on the model's
``serving_input_example.json``. ``--cprofile`` adds the top of a cProfile of kiln's path.

    .venv/bin/python bench/profile_scoring.py                 # the sklearn_iris fixture
    .venv/bin/python bench/profile_scoring.py MODEL_DIR --cprofile
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``kiln`` and ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_call(fn: Callable[[], Any], *, calls: int = 300, rounds: int = 7) -> float:
    """Seconds per call, best of ``rounds`` (the least disturbed by other load)."""
    for _ in range(min(calls, 50)):
        fn()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "model_dir", nargs="?", help="an MLflow model dir (default: the sklearn_iris fixture)"
    )
    parser.add_argument("--cprofile", action="store_true", help="also print a cProfile of kiln's path")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    model_dir = args.model_dir
    if model_dir is None:
        from tests.fixtures import models

        model_dir = str(models.save("sklearn_iris", Path(tempfile.mkdtemp()) / "sklearn_iris"))
    body = (Path(model_dir) / "serving_input_example.json").read_bytes()

    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    from kiln.server.parsing import parse_request
    from kiln.server.predict import Predictor
    from kiln.server.serialize import predictions_json
    from kiln.server.state import ServerState
    from kiln.settings import RuntimeSettings

    model = mlflow.pyfunc.load_model(model_dir)
    schema = model.metadata.get_input_schema()
    settings = RuntimeSettings(model_dir=model_dir)
    fast = ServerState(settings=settings, metrics=None, predictor=Predictor(model))
    slow = ServerState(settings=settings, metrics=None, predictor=Predictor(model, fast_path=False))
    assert fast.predictor is not None
    predictor = fast.predictor
    request = parse_request(body, "json", predictor.contract)
    prediction = predictor.predict(request.data, request.params, conforms=request.conforms)

    rows = [
        (
            "MLflow scoring_server.invocations",
            lambda: scoring_server.invocations(body, "application/json", model, schema),
        ),
        ("kiln score, MLflow's predict", lambda: slow.score(body, "json")),
        ("kiln score, fast path", lambda: fast.score(body, "json")),
        ("  parse", lambda: parse_request(body, "json", predictor.contract)),
        ("  predict", lambda: predictor.predict(request.data, request.params, conforms=request.conforms)),
        ("  serialise", lambda: predictions_json(prediction)),
        ("flavour predict alone (model._model_impl)", lambda: model._model_impl.predict(request.data)),
        ("MLflow PyFuncModel.predict alone", lambda: model.predict(request.data)),
    ]
    print(f"model {model_dir}; fast path {'on' if predictor.fast else 'off'}; body {len(body)} bytes")
    for name, fn in rows:
        print(f"{name:45s} {per_call(fn) * 1e6:8.0f} us")
    if args.cprofile:
        profile = cProfile.Profile()
        profile.runcall(lambda: [fast.score(body, "json") for _ in range(2000)])
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
