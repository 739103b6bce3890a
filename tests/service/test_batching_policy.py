"""The batching policy: batches bounded by padded tokens (items x the widest item), device defaults, and
the token estimate. No timing: what is checked is which items go together."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.batch_policy import (CPU_BATCH_TOKENS, CUDA_BATCH_TOKENS, batch_token_budget, estimated_tokens)
from service.batching import MicroBatcher


class GatedRecorder:
    """Holds the first batch until released, so everything submitted meanwhile queues behind it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()

    def __call__(self, items):
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.gate.wait(10)
        return list(items)


def batches_for(costs: list[int], budget: int, max_batch_size: int = 64) -> list[list[int]]:
    """Submit a blocker, then `costs` (each item's cost is its value) while the blocker runs."""
    recorder = GatedRecorder()

    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(recorder, max_batch_size=max_batch_size, max_wait_s=0, queue_limit=1000,
                                   executor=pool, cost=lambda item: item, max_batch_cost=budget)
            batcher.start()
            far = time.perf_counter() + 30
            blocker = asyncio.ensure_future(batcher.submit([1], far))
            while not recorder.batches:
                await asyncio.sleep(0.001)
            waiting = [asyncio.ensure_future(batcher.submit([c], far)) for c in costs]
            await asyncio.sleep(0.01)
            recorder.gate.set()
            await asyncio.gather(blocker, *waiting)
            await batcher.stop()

    asyncio.run(main())
    return recorder.batches[1:]


def test_batches_stop_before_their_padded_tokens_exceed_the_budget():
    # 10 items of 20 tokens under a 64-token budget: 3 per batch (3 x 20 = 60; 4 x 20 = 80 > 64).
    assert batches_for([20] * 10, budget=64) == [[20, 20, 20]] * 3 + [[20]]


def test_padding_counts_the_widest_item_for_every_item():
    # 10 + 10 fit (20), adding 40 makes 3 x 40 = 120 > 64: the long one heads the next batch.
    assert batches_for([10, 10, 40, 10], budget=64) == [[10, 10], [40], [10]]


def test_an_item_over_the_budget_still_goes_alone():
    assert batches_for([500, 10, 10], budget=64) == [[500], [10, 10]]


def test_the_count_limit_still_applies_under_a_large_budget():
    assert batches_for([1] * 5, budget=10_000, max_batch_size=2) == [[1, 1], [1, 1], [1]]


def test_device_defaults_and_the_explicit_setting():
    assert batch_token_budget(0, "CPUExecutionProvider") == CPU_BATCH_TOKENS
    assert batch_token_budget(0, "CUDAExecutionProvider") == CUDA_BATCH_TOKENS
    assert CUDA_BATCH_TOKENS > CPU_BATCH_TOKENS  # a GPU gains from wide calls, a CPU does not
    assert batch_token_budget(512, "CPUExecutionProvider") == 512
    assert batch_token_budget(512, "CUDAExecutionProvider") == 512


def test_token_estimate_is_close_to_the_tokenizer_and_capped_at_max_length(default_model_dir, scifact_queries):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(default_model_dir / "tokenizer.json"))
    ratios = [estimated_tokens(q, 512) / len(tokenizer.encode(q).ids) for q in scifact_queries]
    assert 0.8 <= sum(ratios) / len(ratios) <= 1.4
    assert estimated_tokens("word " * 1000, 64) == 64
    assert estimated_tokens("", 64) == 2  # the special tokens alone


@pytest.mark.anyio
async def test_the_service_splits_a_batch_request_by_its_token_budget(in_process, metric_value):
    text = "vitamin d deficiency and bone density in adults"  # 47 characters: 14 estimated tokens
    async with in_process(encoder_max_batch_tokens=30) as client:  # two such texts per encoder call
        info = (await client.get("/info")).json()
        batch = await client.post("/search/batch", json={"queries": [{"query": text}] * 8})
        exposition = (await client.get("/metrics")).text
    assert info["settings"]["encoder_max_batch_tokens"] == 30
    assert batch.status_code == 200 and len(batch.json()["results"]) == 8
    assert metric_value(exposition, "splade_encoder_batch_size_sum") == 8
    assert metric_value(exposition, "splade_encoder_batch_size_count") == 4


@pytest.fixture
def anyio_backend():
    return "asyncio"
