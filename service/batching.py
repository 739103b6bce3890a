"""Micro-batching with back-pressure: concurrent requests' items become one call of a batch function.

The event loop only queues and wakes; the batch function runs in the executor it is given. Rules:
- a batch is dispatched when it is full (`max_batch_size`) or its oldest item has waited `max_wait_s`;
  while one batch runs, newcomers queue, so batches grow with load without adding idle waiting;
- with a `cost` function and `max_batch_cost`, a batch also stops before its padded cost (items x the
  largest item cost, e.g. padded tokens) would exceed the budget; the head item always goes, alone if need be;
- one batch runs at a time (the encoder parallelises inside a call; two calls would only contend);
- at most `queue_limit` items wait: `submit` raises `QueueFull` at once beyond that (the caller answers
  503 + Retry-After), so a burst cannot build an unbounded backlog;
- an item whose deadline passed or whose caller gave up (cancelled) is dropped before its batch is formed,
  so abandoned work never reaches the executor.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(Exception):
    """The queue holds `limit` items already; the caller should retry later."""

    def __init__(self, pending: int, requested: int, limit: int) -> None:
        super().__init__(f"queue full: {pending} waiting + {requested} requested > limit {limit}")
        self.pending = pending
        self.requested = requested
        self.limit = limit


class DeadlineExceeded(Exception):
    """The item was not processed before its deadline."""


@dataclass(frozen=True, slots=True)
class Batched(Generic[R]):
    """One item's result with how long it queued (admission to dispatch) and the size of its batch."""

    value: R
    queue_s: float
    batch_size: int


class _Entry:
    __slots__ = ("item", "future", "enqueued_at", "deadline", "queued")

    def __init__(self, item, future: asyncio.Future, enqueued_at: float, deadline: float) -> None:
        self.item = item
        self.future = future
        self.enqueued_at = enqueued_at
        self.deadline = deadline
        self.queued = True  # counted in `pending` until taken into a batch or abandoned


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        queue_limit: int,
        executor: Executor,
        on_batch: Callable[[int], None] | None = None,
        cost: Callable[[T], int] | None = None,
        max_batch_cost: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_batch_size < 1 or queue_limit < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and queue_limit must be >= 1 and max_wait_s >= 0")
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._queue_limit = queue_limit
        self._executor = executor
        self._on_batch = on_batch
        self._cost = cost
        self._max_batch_cost = max_batch_cost if cost is not None else None
        self._clock = clock
        self._queue: deque[_Entry] = deque()
        self._pending = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @property
    def pending(self) -> int:
        """Items admitted and not yet taken into a batch."""
        return self._pending

    def start(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._collect_forever(), name="micro-batcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        while self._queue:
            entry = self._queue.popleft()
            if not entry.future.done():
                entry.future.set_exception(RuntimeError("the service is shutting down"))
        self._pending = 0

    async def submit(self, items: Sequence[T], deadline: float) -> list[Batched[R]]:
        """Queue `items` (admitted all or none) and wait for their results until `deadline` (clock time)."""
        if self._task is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if not items:
            return []
        if self._pending + len(items) > self._queue_limit:
            raise QueueFull(self._pending, len(items), self._queue_limit)
        now = self._clock()
        if deadline <= now:
            raise DeadlineExceeded()
        loop = asyncio.get_running_loop()
        entries = [_Entry(item, loop.create_future(), now, deadline) for item in items]
        for entry in entries:
            entry.future.add_done_callback(lambda _f, e=entry: self._release(e))
        self._queue.extend(entries)
        self._pending += len(entries)
        self._wakeup.set()
        futures = [entry.future for entry in entries]
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), deadline - now))
        except TimeoutError:
            raise DeadlineExceeded() from None
        finally:
            # On timeout, error or the caller's cancellation: withdraw whatever has not run yet.
            for future in futures:
                if not future.done():
                    future.cancel()

    def _release(self, entry: _Entry) -> None:
        if entry.queued:
            entry.queued = False
            self._pending -= 1

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_until_batch_due()
            batch = self._take_batch()
            if not batch:
                continue
            dispatched_at = self._clock()
            if self._on_batch is not None:
                self._on_batch(len(batch))
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, [e.item for e in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            except asyncio.CancelledError:
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(RuntimeError("the service is shutting down"))
                raise
            except Exception as exc:  # the batch's callers get the error; the batcher keeps serving
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(exc)
                continue
            for entry, result in zip(batch, results):
                if not entry.future.done():
                    entry.future.set_result(Batched(result, dispatched_at - entry.enqueued_at, len(batch)))

    async def _wait_until_batch_due(self) -> None:
        while True:
            while self._queue and not self._queue[0].queued:
                self._queue.popleft()  # abandoned entries at the head do not hold a batch back
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._pending >= self._max_batch_size:
                return
            remaining = self._queue[0].enqueued_at + self._max_wait_s - self._clock()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Entry]:
        batch: list[_Entry] = []
        now = self._clock()
        widest = 0  # the largest item cost in the batch: padding makes every item cost that much
        while self._queue and len(batch) < self._max_batch_size:
            entry = self._queue.popleft()
            if not entry.queued:
                continue
            if self._max_batch_cost is not None and not entry.future.done():
                cost = max(widest, self._cost(entry.item))
                if batch and cost * (len(batch) + 1) > self._max_batch_cost:
                    self._queue.appendleft(entry)  # over the budget: it heads the next batch
                    break
                widest = cost
            self._release(entry)
            if entry.future.done():
                continue
            if entry.deadline <= now:
                entry.future.set_exception(DeadlineExceeded())
                continue
            batch.append(entry)
        return batch
