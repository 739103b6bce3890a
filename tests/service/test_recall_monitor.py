"""The online recall monitor: sampled answers of an approximate scorer are re-scored exactly in the background;
the gauge shows a weak scorer's recall below its target, and the queue stays bounded under load."""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from engine import scorers
from engine.query import SparseQuery
from engine.scorers.base import TopK
from engine.scorers.exact import ExactScorer

pytestmark = pytest.mark.anyio


class HalfOfTheTop(ExactScorer):
    """A deliberately weak approximate scorer: the better half of the exact top-k (recall@k = 0.5)."""

    name = "test-half-of-the-top"
    safe = False
    recall_floor = 0.4

    def search(self, query: SparseQuery, k: int, scratch: Any, options: Mapping[str, Any], allowed=None) -> TopK:
        top = super().search(query, k, scratch, options, allowed)
        half = (len(top.doc_numbers) + 1) // 2
        return TopK(top.doc_numbers[:half], top.scores[:half], top.stats)


@pytest.fixture
def weak_scorer():
    scorers.register(HalfOfTheTop)
    yield HalfOfTheTop.name
    scorers.unregister(HalfOfTheTop.name)


async def wait_for(condition, seconds=20.0):
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_gauge_shows_a_weak_scorer_below_target(in_process, weak_scorer, scifact_queries, metric_value):
    async with in_process(recall_sample_rate=1.0) as client:
        for text in scifact_queries[:10]:
            response = await client.post("/search", json={"query": text, "k": 10, "scorer": weak_scorer})
            assert response.status_code == 200 and response.json()["scorer"] == weak_scorer
        exact = await client.post("/search", json={"query": scifact_queries[0], "k": 10})  # safe: never sampled
        monitor = client._transport.app.state.service.pipeline.recall_monitor
        assert await wait_for(lambda: monitor.recall(weak_scorer) is not None and monitor.pending == 0)
        text = (await client.get("/metrics")).text
    assert exact.json()["scorer"] == "exact"
    assert metric_value(text, "splade_recall_samples_total", {"outcome": "scored"}) == 10
    recall = metric_value(text, "splade_recall_at_k", {"scorer": weak_scorer})
    assert 0.45 <= recall <= 0.6, recall  # half of each top-10 (ties aside): far below a 0.99 target
    assert metric_value(text, "splade_recall_at_k", {"scorer": "exact"}) == 0.0  # no series for a safe scorer


async def test_the_sample_queue_stays_bounded_under_load(in_process, weak_scorer, scifact_queries, metric_value):
    limit = 2
    async with in_process(recall_sample_rate=1.0, recall_queue_limit=limit) as client:
        app_state = client._transport.app.state.service  # the in-process app's pipeline, to watch its queue
        monitor = app_state.pipeline.recall_monitor
        seen = []
        watching = True

        async def watch():
            while watching:
                seen.append(monitor.pending)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        queries = [{"query": q, "k": 100, "scorer": weak_scorer} for q in scifact_queries]
        responses = await asyncio.gather(*(client.post("/search/batch", json={"queries": queries}) for _ in range(3)))
        watching = False
        await watcher
        assert all(r.status_code == 200 for r in responses)
        await wait_for(lambda: monitor.pending == 0)
        text = (await client.get("/metrics")).text
    assert max(seen) <= limit
    sampled = 3 * len(queries)
    dropped = metric_value(text, "splade_recall_samples_total", {"outcome": "dropped"})
    scored = metric_value(text, "splade_recall_samples_total", {"outcome": "scored"})
    assert dropped + scored == sampled and dropped > 0, (dropped, scored)
