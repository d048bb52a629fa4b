"""Schema-driven fuzzing with schemathesis: requests generated from the server's own ``/openapi.json``.

For every operation of the document, schemathesis generates requests that fit it
(positive) and requests that break it on purpose (negative). Each answer is judged
twice: by kiln's promises (``wire.problems``: no 5xx but 504, every error JSON) and by
the document (schemathesis' conformance checks: a documented status code, the
documented Content-Type, headers and body schema).

Not checked: that every schema-valid request gets 200, or every schema-breaking one a
4xx. JSON Schema cannot say that ``index`` has as many entries as ``data`` or that
columnar ``inputs`` are lists of one length, and MLflow casts more leniently than the
schema's types (``true`` for a double column is accepted), so those checks would test
JSON Schema, not the server.
"""

from __future__ import annotations

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.server.fuzz.report import FuzzReport
from tests.server.fuzz.target import FuzzTarget
from tests.server.fuzz.wire import Answer, RawRequest, problems

CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SMALL_OPERATIONS = 10
"""Examples per mode for the operations without a body (there is little to vary)."""


def run_schema(target: FuzzTarget, examples: int) -> FuzzReport:
    """``examples`` positive and ``examples`` negative requests for ``POST /invocations``, a few for
    the other operations; then the server's health."""
    mode = "behind nginx" if target.nginx else "uvicorn alone"
    report = FuzzReport(f"schemathesis ({mode})")
    before = target.snapshot()
    schema = schemathesis.openapi.from_url(target.url + "/openapi.json")
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            count = examples if len(operation.body) else SMALL_OPERATIONS
            # Without a body or parameters there is nothing to break on purpose.
            modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE][: 2 if len(operation.body) else 1]
            for generation in modes:
                _run(operation, generation, count, target, session, report)
    return report.finish(target.check(before))


def _run(
    operation: Any,
    generation: GenerationMode,
    count: int,
    target: FuzzTarget,
    session: requests.Session,
    report: FuzzReport,
) -> None:
    config = settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )

    @config
    @given(case=operation.as_strategy(generation_mode=generation))
    def fuzz(case: Any) -> None:
        response = case.call(base_url=target.url, session=session, timeout=30)
        answer = Answer(
            response.status_code, {k: v[0] for k, v in response.headers.items()}, response.content
        )
        request = RawRequest(response.request.method.encode(), response.request.path_url.encode())
        found = problems(request, answer)
        try:
            case.validate_response(response, checks=CHECKS)
        except schemathesis.errors.FailureGroup as group:
            found += [f"{failure.title}: {failure.message}" for failure in group.exceptions]
        report.record(answer.status, found, _describe(case, generation))

    fuzz()


def _describe(case: Any, generation: GenerationMode) -> str:
    text = f"{generation.value}: {case.as_curl_command()}"
    return text if len(text) <= 400 else text[:400] + "..."
