"""Errors of the V2 endpoints: ``{"error": "..."}``, as the Open Inference Protocol says.

=====  ====================================================================================
400    the request is malformed, does not fit the model's signature, or the model's
       predict raised (MLServer answers 422 or 500 for some of these)
404    no model of that name (or version) here
413    the body is larger than ``max_body_size``
500    kiln failed, or the prediction has no tensor encoding
503    the worker's queue is full (``max_queue``) or the model is still loading
504    no answer within ``request_timeout``
=====  ====================================================================================
"""

from __future__ import annotations

import orjson


class V2Failure(Exception):
    """A request the V2 endpoints answer with an error (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error_json(message: str) -> bytes:
    return orjson.dumps({"error": message})


def not_found(name: str, version: str | None = None) -> V2Failure:
    """MLServer's words for an unknown model or version."""
    if version is not None:
        return V2Failure(f"Model {name} with version {version} not found", 404)
    return V2Failure(f"Model {name} not found", 404)
