"""JSON error answers as Starlette responses (``kiln.server.errors`` makes their bodies)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from kiln.server.errors import JSON_MEDIA_TYPE, error_body


def error_response(
    status: int, error_code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON error answer."""
    return Response(error_body(error_code, message), status, headers=headers, media_type=JSON_MEDIA_TYPE)
