"""One JSON error shape for every 4xx/5xx: `{"error": {"type", "message", "details": [{field, message, limit}]}}`.

Handlers here turn request validation errors, malformed JSON, routing errors and the engine's domain errors
(an invalid query or unknown vector token -> 422, overloaded -> 503 + Retry-After, deadline exceeded -> 504)
into that shape: this is the only place where domain errors become status codes, so a client parses one
thing and never sees a bare 500 for bad input.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from engine import DeadlineExceededError, InvalidQueryError, OverloadedError
from service.limits import limit_of

logger = logging.getLogger("service.errors")


_TYPE_BY_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}


def detail(field: str, message: str, limit: Any = None) -> dict:
    return {"field": field, "message": message, "limit": limit}


class ApiError(Exception):
    """An error the service answers deliberately; carries its HTTP status, type and details."""

    status_code = 400
    error_type = "bad_request"

    def __init__(
        self,
        message: str,
        details: Sequence[dict] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})


class NotReadyError(ApiError):
    status_code = 503
    error_type = "not_ready"


def error_body(error_type: str, message: str, details: Sequence[dict] = ()) -> dict:
    return {"error": {"type": error_type, "message": message, "details": list(details)}}


def error_response(
    status_code: int,
    error_type: str,
    message: str,
    details: Sequence[dict] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        orjson.dumps(error_body(error_type, message, details)),
        status_code=status_code,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def field_path(loc: Sequence[Any]) -> str:
    """("body", "queries", 2, "k") -> "queries[2].k"; the transport location ("body") is dropped."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict]:
    details = []
    for error in errors:
        limit = limit_of(error)
        loc = tuple(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "query_or_vector":  # a model-level rule: name the field it is about
            loc = (*loc, "query")
        elif error.get("type") == "text_or_vector":  # the same rule for a written document
            loc = (*loc, "text")
        elif error.get("type") == "string_pattern_mismatch":  # the only pattern is \S (some text)
            message = "must contain a non-whitespace character (empty or whitespace-only text)"
        details.append(detail(field_path(loc), message, _json_safe(limit)))
    return details


async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        ctx = next(error.get("ctx") or {} for error in errors if error.get("type") == "json_invalid")
        reason = ctx.get("error", "not valid JSON")
        return error_response(
            400, "malformed_json", f"request body is not valid JSON: {reason}", [detail("body", str(reason))]
        )
    details = validation_details(errors)
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return error_response(422, "validation_error", f"invalid request: {summary}", details)


async def _on_api_error(request: Request, exc: ApiError) -> Response:
    return error_response(exc.status_code, exc.error_type, exc.message, exc.details, exc.headers)


async def _on_invalid_query(request: Request, exc: InvalidQueryError) -> Response:
    return error_response(422, "validation_error", str(exc), [detail(exc.field, exc.message, _json_safe_limit(exc.limit))])


async def _on_overloaded(request: Request, exc: OverloadedError) -> Response:
    return error_response(503, "queue_full", str(exc), [detail("queue", "queue full", exc.limit)],
                          headers={"Retry-After": "1"})


async def _on_deadline(request: Request, exc: DeadlineExceededError) -> Response:
    return error_response(504, "timeout", str(exc), [detail("request_timeout_s", "deadline exceeded", exc.limit_s)])


def _json_safe_limit(limit: Any) -> Any:
    if isinstance(limit, (list, tuple)):
        return ", ".join(str(item) for item in limit)  # allowed values, e.g. scorer names
    return _json_safe(limit)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    error_type = _TYPE_BY_STATUS.get(exc.status_code, "http_error")
    return error_response(exc.status_code, error_type, str(exc.detail), headers=getattr(exc, "headers", None))


async def _on_unexpected_error(request: Request, exc: Exception) -> Response:
    # A bug, not bad input: log it with its traceback, answer in the one shape without internals.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error; the service log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(InvalidQueryError, _on_invalid_query)
    app.add_exception_handler(OverloadedError, _on_overloaded)
    app.add_exception_handler(DeadlineExceededError, _on_deadline)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
