"""The micro-batcher on plain callables: batching, ordering, back-pressure, deadlines, errors."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.batching import DeadlineExceeded, MicroBatcher, QueueFull


class Recorder:
    """A batch function that records the batches it gets; optionally blocks until released."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list] = []
        self.gate = gate

    def __call__(self, items):
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(list(items))
        return [item * 10 for item in items]


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


def run(coro):
    return asyncio.run(coro)


def far() -> float:
    return time.perf_counter() + 30


def test_concurrent_items_share_a_batch_and_keep_their_order(executor):
    recorder = Recorder()

    async def main():
        batcher = MicroBatcher(recorder, max_batch_size=8, max_wait_s=0.2, queue_limit=100, executor=executor)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([i], far()) for i in range(5)))
        await batcher.stop()
        return results

    results = run(main())
    assert [r[0].value for r in results] == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1, 2, 3, 4]]
    assert all(r[0].batch_size == 5 and r[0].queue_s >= 0 for r in results)


def test_full_batch_goes_without_waiting_for_max_wait(executor):
    recorder = Recorder()

    async def main():
        batcher = MicroBatcher(recorder, max_batch_size=4, max_wait_s=30, queue_limit=100, executor=executor)
        batcher.start()
        out = await asyncio.wait_for(batcher.submit([1, 2, 3, 4, 5, 6, 7, 8], far()), 10)
        await batcher.stop()
        return out

    out = run(main())
    assert [b.value for b in out] == [10, 20, 30, 40, 50, 60, 70, 80]
    assert recorder.batches == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_batch_size_one_means_no_batching(executor):
    recorder = Recorder()

    async def main():
        batcher = MicroBatcher(recorder, max_batch_size=1, max_wait_s=0.05, queue_limit=100, executor=executor)
        batcher.start()
        await asyncio.gather(*(batcher.submit([i], far()) for i in range(4)))
        await batcher.stop()

    run(main())
    assert sorted(recorder.batches) == [[0], [1], [2], [3]]


def test_full_queue_rejects_at_once_then_recovers(executor):
    gate = threading.Event()
    recorder = Recorder(gate)

    async def main():
        batcher = MicroBatcher(recorder, max_batch_size=1, max_wait_s=0, queue_limit=2, executor=executor)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([1], far()))
        await asyncio.sleep(0.05)  # the first item is now in the (blocked) batch function
        queued = [asyncio.ensure_future(batcher.submit([i], far())) for i in (2, 3)]
        await asyncio.sleep(0.01)
        assert batcher.pending == 2
        with pytest.raises(QueueFull) as info:
            await batcher.submit([4], far())
        assert info.value.limit == 2
        with pytest.raises(QueueFull):
            await batcher.submit([5, 6], far())  # admitted whole or not at all
        gate.set()
        done = await asyncio.gather(first, *queued)
        assert [d[0].value for d in done] == [10, 20, 30]
        assert batcher.pending == 0
        again = await batcher.submit([7], far())
        await batcher.stop()
        return again

    assert run(main())[0].value == 70
    assert [4] not in recorder.batches and [5] not in recorder.batches


def test_expired_items_are_dropped_before_the_batch_function(executor):
    gate = threading.Event()
    recorder = Recorder(gate)

    async def main():
        batcher = MicroBatcher(recorder, max_batch_size=1, max_wait_s=0, queue_limit=10, executor=executor)
        batcher.start()
        blocker = asyncio.ensure_future(batcher.submit([1], far()))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceeded):
            await batcher.submit([2], time.perf_counter() + 0.05)
        assert batcher.pending == 0  # the abandoned item no longer holds a queue slot
        gate.set()
        await blocker
        after = await batcher.submit([3], far())
        await batcher.stop()
        return after

    assert run(main())[0].value == 30
    assert recorder.batches == [[1], [3]]  # item 2 never reached the batch function


def test_a_failing_batch_fails_its_callers_only(executor):
    calls = []

    def flaky(items):
        calls.append(list(items))
        if "bad" in items:
            raise RuntimeError("encoder exploded")
        return [s.upper() for s in items]

    async def main():
        batcher = MicroBatcher(flaky, max_batch_size=4, max_wait_s=0, queue_limit=10, executor=executor)
        batcher.start()
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit(["bad"], far())
        ok = await batcher.submit(["fine"], far())
        await batcher.stop()
        return ok

    assert run(main())[0].value == "FINE"


def test_invalid_limits_are_refused(executor):
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch_size=0, max_wait_s=0, queue_limit=1, executor=executor)
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch_size=1, max_wait_s=-1, queue_limit=1, executor=executor)
