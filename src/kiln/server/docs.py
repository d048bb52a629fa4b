"""``GET /openapi.json`` and ``GET /docs``: the model's OpenAPI document and a page to read and try it.

``ApiDocs.build()`` runs once, after the model has loaded: it reads the model's MLmodel and
serving input example and keeps the document as JSON bytes. ``/docs`` is a self-contained
page (package data ``templates/docs.html``, no CDN: it works where the cluster has no
internet) that renders the document and posts requests to ``/invocations``. With
``KILN_OPENAPI=false`` both answer JSON 404.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from importlib import resources
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from kiln.model.info import ModelInfo, read_model_info
from kiln.server.errors import ENDPOINT_NOT_FOUND, JSON_MEDIA_TYPE
from kiln.server.openapi import openapi_document
from kiln.server.parsing import _parquet_engine_available
from kiln.server.responses import error_response
from kiln.server.state import ServerState
from kiln.version import __version__

logger = logging.getLogger(__name__)


def _page() -> tuple[bytes, str]:
    """The page, and its Content-Security-Policy: only its own inline script, talking to this origin."""
    html = (resources.files("kiln.server") / "templates" / "docs.html").read_text(encoding="utf-8")
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    policy = (
        f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode("utf-8"), policy


class ApiDocs:
    """The two endpoints; ``document`` is None until ``build()`` (and stays None if it failed)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.settings = state.settings
        self.document: bytes | None = None
        self._page: tuple[bytes, str] | None = None

    def build(self) -> None:
        """Build the document for the loaded model; a failure is logged, and serving goes on."""
        if not self.settings.openapi:
            return
        try:
            settings = self.settings
            info = read_model_info(settings.model_dir)
            document = openapi_document(
                info,
                version=__version__,
                max_body_size=settings.max_body_size,
                request_timeout=settings.request_timeout,
                metrics=settings.metrics,
                parquet=_parquet_engine_available(),
                serving_example=_serving_example(info),
                v2=self.state.v2,
            )
            self.document = orjson.dumps(document)
            self._page = _page()
        except Exception:  # a bug in kiln's document: the model still serves
            logger.exception("the OpenAPI document could not be built; /openapi.json and /docs answer 404")

    async def openapi_json(self, request: Request) -> Response:
        if self.document is None:
            return self._off(request)
        return Response(self.document, 200, media_type=JSON_MEDIA_TYPE)

    async def docs_page(self, request: Request) -> Response:
        if self._page is None:
            return self._off(request)
        body, policy = self._page
        headers = {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff"}
        return Response(body, 200, media_type="text/html; charset=utf-8", headers=headers)

    def _off(self, request: Request) -> Response:
        why = (
            "the OpenAPI document is turned off (KILN_OPENAPI=false)"
            if not self.settings.openapi
            else "the OpenAPI document could not be built (see the server log)"
        )
        return error_response(404, ENDPOINT_NOT_FOUND, f"{why}; no route for {request.url.path}")


def _serving_example(info: ModelInfo) -> Any:
    """The model's ``serving_input_example.json``, or None when it has none or it is not JSON."""
    if not info.serving_input_example_file:
        return None
    try:
        with open(info.path / info.serving_input_example_file, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None
