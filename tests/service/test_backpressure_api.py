"""Back-pressure through HTTP: a full queue answers 503 + Retry-After at once, and the service recovers."""
from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.anyio


async def test_full_queue_gives_503_with_retry_after_then_recovers(in_process, metric_value, scifact_queries):
    # Two queue slots and a long batch wait: the first two texts sit in the queue waiting for company,
    # so every further text finds the queue full.
    settings = dict(queue_limit=2, max_batch_queries=1, encoder_max_batch_size=64, encoder_max_wait_ms=500)
    async with in_process(**settings) as client:
        burst = await asyncio.gather(
            *(client.post("/search", json={"query": text}) for text in scifact_queries[:6])
        )
        batch_after = await client.post("/search/batch", json={"queries": [{"query": "x"}]})
        after = [await client.post("/search", json={"query": text}) for text in scifact_queries[6:9]]
        metrics = (await client.get("/metrics")).text

    statuses = sorted(r.status_code for r in burst)
    assert statuses == [200, 200, 503, 503, 503, 503]
    for response in burst:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1"
            error = response.json()["error"]
            assert error["type"] == "queue_full"
            assert error["details"][0]["limit"] == 2
    # the batch request came after the burst had drained, so it was admitted
    assert batch_after.status_code == 200
    assert [r.status_code for r in after] == [200, 200, 200]
    assert metric_value(metrics, "splade_rejected_requests_total", {"reason": "queue_full"}) == 4
    assert metric_value(metrics, "splade_request_duration_seconds_count", {"endpoint": "/search", "status": "503"}) == 4
    assert metric_value(metrics, "splade_requests_in_flight") == 1  # only the /metrics request itself
