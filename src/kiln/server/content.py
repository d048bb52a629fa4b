"""Content types accepted by ``POST /invocations`` and the parsing of the Content-Type header."""

from __future__ import annotations

from typing import Literal

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
    f"expected one of {', '.join(ACCEPTED)}, optionally with the parameter charset=utf-8 "
    "(e.g. 'application/json; charset=utf-8')"
)


def media_kind(content_type: str | None) -> MediaKind:
    """Which parser a Content-Type header selects; ScoringFailure 415 for anything else.

    The media type and the ``charset`` parameter are case-insensitive (MLflow compares
    them case-sensitively); ``charset=utf-8`` is the only parameter allowed.
    """
    if content_type is None or not content_type.strip():
        raise _unsupported(f"the request has no Content-Type header; {_ACCEPTED_TEXT}")
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    kind = _KINDS.get(mime.lower())
    if kind is None:
        raise _unsupported(f"unsupported Content-Type {content_type!r}; {_ACCEPTED_TEXT}")
    for parameter in parameters:
        if not parameter:
            continue
        name, _, value = parameter.partition("=")
        name = name.strip().lower()
        value = value.strip().strip('"').lower()
        if name != "charset":
            raise _unsupported(
                f"unsupported Content-Type parameter {parameter!r} in {content_type!r}; "
                "the only parameter allowed is charset=utf-8"
            )
        if value not in ("utf-8", "utf8"):
            raise _unsupported(
                f"unsupported charset {value!r} in Content-Type {content_type!r}; "
                "the scoring server only accepts UTF-8 (charset=utf-8)"
            )
    return kind


def _unsupported(message: str) -> ScoringFailure:
    return ScoringFailure(message, status=415, error_code=BAD_REQUEST)
