"""Exceptions: one per kind of failure, each carrying what the server said.

Every error the service answers has one JSON shape, `{"error": {"type", "message", "details": [{field,
message, limit}]}}`; `error_from_response` turns it into the matching exception, so callers catch
`InvalidRequestError` (fix the request), `ServiceUnavailableError` (retry later; the client already did, within
its `RetryPolicy`) or `RequestTimeoutError` (the server gave up on the request) instead of parsing JSON.
"""
from __future__ import annotations

import httpx

from splade_client.models import ErrorDetail


class SpladeClientError(Exception):
    """Base of every error this client raises."""


class SpladeConnectionError(SpladeClientError):
    """The service could not be reached (refused, DNS, connect or read timeout on the client side)."""

    def __init__(self, message: str, attempts: int = 1, elapsed_s: float = 0.0) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.elapsed_s = elapsed_s


class ApiError(SpladeClientError):
    """The service answered with an error status.

    `error_type` is the server's `error.type` (`validation_error`, `queue_full`, ...), `details` its list of
    {field, message, limit}; `field` and `limit` are the first detail's, for the common one-problem case.
    `attempts` and `elapsed_s` say how many requests were sent and for how long before giving up.
    """

    def __init__(
        self,
        status_code: int,
        error_type: str,
        message: str,
        details: list[ErrorDetail] | None = None,
        retry_after_s: float | None = None,
        attempts: int = 1,
        elapsed_s: float = 0.0,
    ) -> None:
        self.status_code = status_code
        self.error_type = error_type
        self.message = message
        self.details = list(details or [])
        self.retry_after_s = retry_after_s
        self.attempts = attempts
        self.elapsed_s = elapsed_s
        super().__init__(self._describe())

    @property
    def field(self) -> str | None:
        return self.details[0].field if self.details else None

    @property
    def limit(self) -> int | float | str | None:
        return self.details[0].limit if self.details else None

    def _describe(self) -> str:
        text = f"{self.status_code} {self.error_type}: {self.message}"
        limits = [f"{d.field}: limit {d.limit}" for d in self.details if d.limit is not None]
        if limits:
            text += f" ({'; '.join(limits)})"
        if self.attempts > 1:
            text += f" [gave up after {self.attempts} attempts in {self.elapsed_s:.1f} s]"
        return text

    def with_attempts(self, attempts: int, elapsed_s: float) -> ApiError:
        """The same error, its message saying how many attempts were made (raised when retries run out)."""
        self.attempts, self.elapsed_s = attempts, elapsed_s
        self.args = (self._describe(),)
        return self


class AuthenticationError(ApiError):
    """401: the service has an API key and the client sent none or a wrong one (`api_key=`); never retried."""


class InvalidRequestError(ApiError):
    """400/422: the request is wrong (a field out of range, unknown token, malformed JSON); never retried."""


class NotFoundError(ApiError):
    """404/405: no such route (a server older than this client, or a wrong base URL)."""


class ServiceUnavailableError(ApiError):
    """503: the service cannot take the request now."""


class QueueFullError(ServiceUnavailableError):
    """503 `queue_full`: the encoder queue is full (the limit is `limit`); retried after `Retry-After`."""


class NotReadyError(ServiceUnavailableError):
    """503 `not_ready`: still loading (retried), or start-up failed (not retried: the reason is in `message`)."""


class RequestTimeoutError(ApiError):
    """504 `timeout`: not answered within the server's SPLADE_REQUEST_TIMEOUT_S; not retried (it would add load)."""


_CLASS_BY_TYPE = {
    "unauthorized": AuthenticationError,
    "validation_error": InvalidRequestError,
    "malformed_json": InvalidRequestError,
    "queue_full": QueueFullError,
    "not_ready": NotReadyError,
    "timeout": RequestTimeoutError,
    "not_found": NotFoundError,
    "method_not_allowed": NotFoundError,
}
_CLASS_BY_STATUS = {400: InvalidRequestError, 401: AuthenticationError, 404: NotFoundError, 405: NotFoundError, 422: InvalidRequestError,
                    503: ServiceUnavailableError, 504: RequestTimeoutError}


def error_from_response(response: httpx.Response, retry_after_s: float | None = None) -> ApiError:
    """The exception for an error response: the service's JSON shape when present, else the raw status."""
    error_type, message, details = f"http_{response.status_code}", "", []
    try:
        error = response.json()["error"]
        error_type, message = str(error["type"]), str(error["message"])
        details = [ErrorDetail.model_validate(d) for d in error.get("details") or []]
    except (ValueError, KeyError, TypeError):
        # Not the service's shape (a proxy's HTML page, an empty body): keep what there is.
        message = response.text[:500].strip() or response.reason_phrase
    cls = _CLASS_BY_TYPE.get(error_type) or _CLASS_BY_STATUS.get(response.status_code, ApiError)
    return cls(response.status_code, error_type, message, details, retry_after_s)
