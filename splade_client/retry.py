"""When and how long to wait before sending a request again.

Only answers that say "not now" are retried: 503 (`queue_full`, `not_ready` while loading) and failures to
connect (the request never reached the service). 4xx are the caller's to fix and are never retried; 504 means
the server already spent its whole timeout on the request, so sending it again would only add load.
The wait honours `Retry-After` (the server knows when its queue drains) and otherwise backs off
exponentially; a little jitter on top keeps clients refused together from coming back together.
Both the number of attempts and the total time are bounded: a retry whose wait would end past
`max_total_s` is not made.
"""
from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from dataclasses import dataclass

import httpx

from splade_client.errors import (
    ApiError,
    NotReadyError,
    ServiceUnavailableError,
    SpladeConnectionError,
    error_from_response,
)

logger = logging.getLogger("splade_client")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4  # requests sent in all, the first included (1 = no retries)
    max_total_s: float = 10.0  # no retry starts later than this after the first attempt
    backoff_initial_s: float = 0.1  # wait before the 2nd attempt when the server gives no Retry-After
    backoff_max_s: float = 2.0  # cap of the exponential backoff
    jitter: float = 0.1  # each wait is stretched by a random 0..jitter fraction
    retry_connect_errors: bool = True  # the service is restarting or not up yet

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not self.max_total_s >= 0:
            raise ValueError(f"max_total_s must be >= 0, got {self.max_total_s}")
        if self.backoff_initial_s < 0 or self.backoff_max_s < 0 or self.jitter < 0:
            raise ValueError("backoff_initial_s, backoff_max_s and jitter must be >= 0")

    @classmethod
    def none(cls) -> RetryPolicy:
        """Send each request once."""
        return cls(max_attempts=1)

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        """Seconds to wait after the `attempt`-th request (1-based) failed; `Retry-After` wins when given."""
        if retry_after_s is not None:
            base = retry_after_s
        else:
            base = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
        return base * (1 + random.uniform(0, self.jitter))

    def next_delay_s(self, attempt: int, elapsed_s: float, retry_after_s: float | None) -> float | None:
        """The wait before the next attempt, or None when the attempt or time bound says give up."""
        if attempt >= self.max_attempts:
            return None
        delay = self.delay_s(attempt, retry_after_s)
        if elapsed_s + delay > self.max_total_s:
            return None
        return delay


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` in seconds: delta-seconds ("1") or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_retryable(error: ApiError) -> bool:
    """503s say "not now"; a `not_ready` without `Retry-After` says start-up failed, which no wait fixes."""
    if not isinstance(error, ServiceUnavailableError):
        return False
    return not (isinstance(error, NotReadyError) and error.retry_after_s is None)


class Attempts:
    """The retry bookkeeping of one call, shared by the sync and async clients (they differ only in how
    they send and sleep). After each attempt it returns the delay before the next one, None when the
    response is final, or raises the error that ends the call."""

    def __init__(self, policy: RetryPolicy, what: str) -> None:
        self.policy = policy
        self.what = what  # "POST /search", for messages
        self.started = time.monotonic()
        self.count = 0

    def begin(self) -> None:
        self.count += 1

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def after_response(self, response: httpx.Response) -> float | None:
        if response.is_success:
            return None
        error = error_from_response(response, parse_retry_after(response.headers.get("retry-after")))
        delay = None
        if is_retryable(error):
            delay = self.policy.next_delay_s(self.count, self.elapsed_s, error.retry_after_s)
        if delay is None:
            raise error.with_attempts(self.count, self.elapsed_s)
        logger.info("%s: %s %s; retrying in %.2f s (attempt %d of at most %d)", self.what, response.status_code,
                    error.error_type, delay, self.count + 1, self.policy.max_attempts)
        return delay

    def after_transport_error(self, exc: httpx.TransportError) -> float:
        # Only a failed connect is known not to have reached the service; anything later (a read timeout,
        # a dropped connection) may have been processed, and is reported rather than sent again.
        connect_failed = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
        delay = None
        if connect_failed and self.policy.retry_connect_errors:
            delay = self.policy.next_delay_s(self.count, self.elapsed_s, None)
        if delay is None:
            suffix = f" (gave up after {self.count} attempts in {self.elapsed_s:.1f} s)" if self.count > 1 else ""
            raise SpladeConnectionError(
                f"{self.what}: {type(exc).__name__}: {exc}{suffix}", self.count, self.elapsed_s
            ) from exc
        logger.info("%s: %s; retrying in %.2f s (attempt %d of at most %d)", self.what, type(exc).__name__, delay,
                    self.count + 1, self.policy.max_attempts)
        return delay
