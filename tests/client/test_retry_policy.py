"""The retry arithmetic on its own: Retry-After parsing, the backoff, and the two bounds."""
from __future__ import annotations

import email.utils

import httpx
import pytest

from splade_client import NotReadyError, QueueFullError, RequestTimeoutError, RetryPolicy
from splade_client.bodies import batch_body, search_body
from splade_client.errors import ApiError, error_from_response
from splade_client.retry import is_retryable, parse_retry_after


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("inf") is None
    assert parse_retry_after("-3") == 0.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30.0)


def test_retry_after_wins_over_the_backoff_and_jitter_only_stretches_the_wait():
    policy = RetryPolicy(backoff_initial_s=0.1, backoff_max_s=0.3, jitter=0.1)
    for _ in range(50):
        assert 1.0 <= policy.delay_s(1, retry_after_s=1.0) <= 1.1
        assert 0.1 <= policy.delay_s(1, None) <= 0.11
        assert 0.2 <= policy.delay_s(2, None) <= 0.22
        assert 0.3 <= policy.delay_s(5, None) <= 0.33  # capped


def test_no_retry_past_the_attempt_or_the_time_bound():
    policy = RetryPolicy(max_attempts=3, max_total_s=2.0, jitter=0.0)
    assert policy.next_delay_s(1, elapsed_s=0.0, retry_after_s=1.0) == 1.0
    assert policy.next_delay_s(2, elapsed_s=1.0, retry_after_s=1.0) == 1.0
    assert policy.next_delay_s(3, elapsed_s=1.0, retry_after_s=None) is None  # attempts used up
    assert policy.next_delay_s(2, elapsed_s=1.5, retry_after_s=1.0) is None  # would end past 2.0 s
    assert RetryPolicy.none().next_delay_s(1, 0.0, None) is None
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def response(status: int, body: dict | str, headers: dict | None = None) -> httpx.Response:
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://x/search"), **kwargs)


def error_json(error_type: str, message: str, details=()) -> dict:
    return {"error": {"type": error_type, "message": message, "details": list(details)}}


def test_errors_map_to_exceptions_and_only_the_temporary_503s_are_retryable():
    queue_detail = {"field": "queue", "message": "queue full", "limit": 256}
    full = error_from_response(response(503, error_json("queue_full", "full", [queue_detail])), 1.0)
    assert isinstance(full, QueueFullError) and (full.field, full.limit) == ("queue", 256) and is_retryable(full)
    loading = error_from_response(response(503, error_json("not_ready", "loading")), 1.0)
    failed = error_from_response(response(503, error_json("not_ready", "the service failed to start: boom")))
    assert isinstance(loading, NotReadyError) and is_retryable(loading)
    assert isinstance(failed, NotReadyError) and not is_retryable(failed)  # no wait fixes a failed start-up
    timeout = error_from_response(response(504, error_json("timeout", "not answered within 10 s")))
    assert isinstance(timeout, RequestTimeoutError) and not is_retryable(timeout)
    proxy = error_from_response(response(502, "<html>Bad Gateway</html>"))
    assert type(proxy) is ApiError and proxy.error_type == "http_502" and "Bad Gateway" in proxy.message


def test_request_bodies_carry_only_what_was_given_and_per_query_values_win():
    assert search_body("q") == {"query": "q"}
    assert search_body(vector={"a": 1.0}, k=3, scorer="exact") == {"vector": {"a": 1.0}, "k": 3, "scorer": "exact"}
    body = batch_body(["a", {"query": "b", "k": 2}], k=5, include_text=True)
    assert body == {"queries": [{"query": "a", "k": 5, "include_text": True},
                                {"query": "b", "k": 2, "include_text": True}]}
    with pytest.raises(TypeError):
        batch_body([{"query": "a", "kk": 2}])  # a misspelt option fails here, not as a vague 422
