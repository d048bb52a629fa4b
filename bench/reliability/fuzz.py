"""Fuzzing: hypothesis and schemathesis against the real runtime, behind nginx and without it.

For each mode a ``python -m kiln.runtime`` serves ``sklearn_iris`` (2 workers, a 64 KiB
body limit). hypothesis sends generated raw requests (tests/server/fuzz/generated.py);
schemathesis generates requests from the server's own ``/openapi.json``
(tests/server/fuzz/schema.py). Each answer is judged: no 5xx but the documented 504,
every error a JSON ``{"error_code", "message"}``, an answer to every request whose client
did not leave, and for schemathesis every status, Content-Type and body as the document
says. Afterwards the worker, nginx and supervisor processes must be the ones from before
and a correct request must get the model's own prediction. The same runs, smaller, are
tests/server/fuzz/.

    .venv/bin/python -m bench.reliability.fuzz [--quick]     # KILN_FUZZ_SEED=n to repeat a run
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.server.cases import IRIS_COLUMNS
from tests.server.fuzz.generated import run_generated
from tests.server.fuzz.report import FuzzReport
from tests.server.fuzz.schema import run_schema
from tests.server.fuzz.target import BODY_LIMIT, fuzz_target, iris_probe

from bench.reliability.table import Section, Trial, section_main

HYPOTHESIS_SCENARIO = (
    "hypothesis: generated raw requests (odd methods and targets; wrong, foreign-charset and "
    "missing Content-Types; random and near-valid JSON with NaN, 1e400, 10**5000; nesting up to "
    "20 000 levels; invalid UTF-8; CSV; lying Content-Length, chunked, cut-off uploads)"
)
SCHEMA_SCENARIO = (
    "schemathesis: requests generated from the server's /openapi.json, half fitting it, "
    "half breaking it on purpose; answers checked against the document"
)


def run(quick: bool = False) -> Section:
    """Both fuzzers in both modes; the fuzzing section of docs/reliability.md."""
    examples = 300 if quick else 5000
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    work = Path(tempfile.mkdtemp(prefix="kiln-fuzz-"))
    trials: list[Trial] = []
    try:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"file://{work / 'mlruns'}")
        from tests.fixtures import models

        model = models.save("sklearn_iris", work / "sklearn_iris")
        probe = iris_probe(model)
        for nginx in (True, False):
            mode = "behind nginx" if nginx else "uvicorn alone (DISABLE_NGINX)"
            with fuzz_target(model, nginx=nginx, log_dir=work / "logs", probe=probe) as target:
                generated = run_generated(target, IRIS_COLUMNS, examples)
                schema = run_schema(target, examples // 4)
            trials.append(_trial(generated, f"{HYPOTHESIS_SCENARIO}, {mode}"))
            trials.append(_trial(schema, f"{SCHEMA_SCENARIO}, {mode}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes = (
        f'`sklearn_iris`, 2 workers, `KILN_MAX_BODY_SIZE={BODY_LIMIT}`. "No answer" counts only '
        "requests whose client cut its upload short and left (no answer is owed). A row is OK when "
        "no answer broke a promise and the processes and the model's answer to a correct request "
        "were unchanged afterwards. Bugs these fuzzers found, each fixed with a regression test in "
        "`tests/server/fuzz/test_regressions.py` or `tests/server/test_openapi.py`: nginx answered "
        "requests it could not parse with HTML pages, and with 501/505 (server errors) for an unknown "
        "Transfer-Encoding or HTTP version, and with an HTML 413 when such a request also declared "
        "a body over the limit; uvicorn answered requests its parser refused (an unknown "
        "method, non-ASCII in the target) with text/plain; JSON nested over ~1000 levels and "
        "integers over 4300 digits were reported as errors inside the model; the OpenAPI document "
        "allowed `dataframe_split` without `columns` and offered CSV to models that cannot read it."
    )
    return Section("Fuzzing the scoring protocol", tuple(trials), notes)


def _trial(report: FuzzReport, scenario: str) -> Trial:
    outcome = (
        f"{report.server_errors} 5xx besides 504, {report.violations} broken promises, "
        f"{report.crashed} crashed processes, "
        f"{f'{len(report.health)} problems' if report.health else 'the right prediction'} afterwards "
        f"({report.seconds:.0f} s; answers {report.answers()})"
    )
    if report.examples or report.health:
        outcome += "; first: " + (report.examples + report.health)[0].replace("\n", " ")[:300]
    return Trial("fuzzing", scenario, report.requests, outcome, report.ok)


if __name__ == "__main__":
    sys.exit(section_main(run))
