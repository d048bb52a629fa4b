"""Content types accepted by ``POST /invocations`` and the parsing of the Content-Type header."""

from __future__ import annotations

from typing import Literal

from kiln.server import wording
from kiln.server.errors import BAD_REQUEST, ScoringFailure

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
CONTENT_TYPE_PARQUET = "application/vnd.apache.parquet"

MediaKind = Literal["json", "csv", "parquet"]

_KINDS: dict[str, MediaKind] = {
    CONTENT_TYPE_JSON: "json",
    CONTENT_TYPE_CSV: "csv",
    CONTENT_TYPE_PARQUET: "parquet",
}
ACCEPTED = (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV, CONTENT_TYPE_PARQUET)
_ACCEPTED_TEXT = (
    f"Expected one of {', '.join(ACCEPTED)}, optionally with the parameter charset=utf-8 "
    "(e.g. 'application/json; charset=utf-8')"
)


def media_kind(content_type: str | None) -> MediaKind:
    """Which parser a Content-Type header selects; ScoringFailure 415 for anything else.

    The media type and the ``charset`` parameter are case-insensitive (MLflow compares
    them case-sensitively); ``charset=utf-8`` is the only parameter allowed. Messages
    begin with MLflow's words for the same refusal.
    """
    if content_type is None or not content_type.strip():
        raise _unsupported(f"The request has no Content-Type header. {_ACCEPTED_TEXT}")
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    kind = _KINDS.get(mime.lower())
    if kind is None:
        raise _unsupported(f"{wording.UNSUPPORTED_CONTENT_TYPE} Got '{content_type}'. {_ACCEPTED_TEXT}")
    unknown = []
    for parameter in parameters:
        if not parameter:
            continue
        name, _, value = parameter.partition("=")
        value = value.strip().strip('"').lower()
        if name.strip().lower() != "charset":
            unknown.append(name.strip())
        elif value not in ("utf-8", "utf8"):
            raise _unsupported(
                f"{wording.ONLY_UTF8}: unsupported charset {value!r} in Content-Type {content_type!r}; "
                "send charset=utf-8 or no charset"
            )
    if unknown:
        raise _unsupported(wording.unknown_content_parameters(unknown, content_type))
    return kind


def _unsupported(message: str) -> ScoringFailure:
    return ScoringFailure(message, status=415, error_code=BAD_REQUEST)
