"""Retries under a full queue, against a real service whose queue holds one text that waits HOLD_S for company:
while it waits, every other search gets 503 queue_full + Retry-After: 1. The client's retries turn those 503s into
successes within its bounds, and give up with a clear exception when the attempt or the time bound is reached."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from splade_client import AsyncClient, Client, QueueFullError, RetryPolicy
from tests.client.conftest import metric, wait_for_in_flight

pytestmark = pytest.mark.slow  # each test waits out the service's queue hold (seconds)

PATIENT = RetryPolicy(max_attempts=8, max_total_s=20)


def rejected(base_url: str) -> float:
    return metric(base_url, "splade_rejected_requests_total", {"reason": "queue_full"})


def test_retries_turn_503s_into_successes_within_the_bounds(busy_service_url, queries):
    before = rejected(busy_service_url)
    holder, client = Client(busy_service_url, retry=RetryPolicy.none()), Client(busy_service_url, retry=PATIENT)
    with holder, client:
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(holder.search, queries[0], k=3)  # takes the queue's one slot for HOLD_S
            wait_for_in_flight(busy_service_url, 1)
            result = client.search(queries[1], k=3)  # 503 at first, then retried until admitted
            assert len(held.result().hits) == 3
    assert len(result.hits) == 3
    assert rejected(busy_service_url) - before >= 1  # the 503s did happen; the caller saw none of them


def test_the_client_gives_up_with_a_clear_exception_at_its_attempt_or_time_bound(busy_service_url, queries):
    few_attempts = RetryPolicy(max_attempts=2, max_total_s=60)
    little_time = RetryPolicy(max_attempts=10, max_total_s=1.5)  # a second retry would start after ~2 s
    before = rejected(busy_service_url)
    holder = Client(busy_service_url, retry=RetryPolicy.none())
    first, second = Client(busy_service_url, retry=few_attempts), Client(busy_service_url, retry=little_time)
    with holder, first, second:
        with ThreadPoolExecutor(3) as pool:
            held = pool.submit(holder.search, queries[0])
            wait_for_in_flight(busy_service_url, 1)
            # Both run while the holder still holds the queue (it is freed after HOLD_S = 2 s; they end by ~1.1 s).
            by_attempts = pool.submit(first.search, queries[1])
            by_time = pool.submit(second.search, queries[2])
            errors = []
            for future in (by_attempts, by_time):
                with pytest.raises(QueueFullError) as caught:
                    future.result()
                errors.append(caught.value)
            held.result()
    for error in errors:
        assert (error.status_code, error.error_type, error.field, error.limit) == (503, "queue_full", "queue", 1)
        assert error.retry_after_s == 1.0
        assert error.attempts == 2
        assert "gave up after 2 attempts" in str(error) and "queue is full" in str(error)
    assert errors[1].elapsed_s <= little_time.max_total_s
    assert rejected(busy_service_url) - before == 4  # two attempts each, no more


def test_async_retries_turn_503s_into_successes_under_concurrent_calls(busy_service_url, queries):
    before = rejected(busy_service_url)

    async def three_at_once():
        async with AsyncClient(busy_service_url, retry=PATIENT) as client:
            return await asyncio.gather(*(client.search(text, k=2) for text in queries[:3]))

    results = asyncio.run(three_at_once())
    assert [len(result.hits) for result in results] == [2, 2, 2]
    # One was admitted at once; the other two were refused at least once each before getting in.
    assert rejected(busy_service_url) - before >= 2
