"""Intra-query parallelism: how many threads one query's scoring may use, and the pool that runs its shares.

A scorer that can split a query (today `exact-blocked`, over its document ranges) runs its first share on the
calling thread and the others on one process-wide pool; the kernels release the GIL, so the shares run truly in
parallel. `configure(n)` (the service's SPLADE_SEARCH_THREADS) sets both the default of a request's `threads`
option and the most threads any request gets. One thread, the default, is the path without any pool: under
concurrent load every core is already busy with other queries, so splitting one only adds overhead.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

# The most threads a request may ask for (the option's limit) and the server may allow.
MAX_THREADS = 64

T = TypeVar("T")

_lock = threading.Lock()
_max_threads = 1
_pool: ThreadPoolExecutor | None = None


def configure(max_threads: int) -> None:
    """Allow queries up to `max_threads` threads (and make it the default of requests that name none)."""
    global _max_threads, _pool
    if isinstance(max_threads, bool) or not isinstance(max_threads, int) or not 1 <= max_threads <= MAX_THREADS:
        raise ValueError(f"max_threads must be an integer in [1, {MAX_THREADS}], got {max_threads!r}")
    with _lock:
        if max_threads != _max_threads and _pool is not None:
            _pool.shutdown(wait=False)  # running shares finish; a new pool of the new size is made on demand
            _pool = None
        _max_threads = max_threads


def max_threads() -> int:
    """Threads a query may use at most: the configured cap (1 unless configured)."""
    return _max_threads


def run_shares(share: Callable[[int], T], shares: int) -> list[T]:
    """[share(0), ..., share(shares - 1)]: share 0 on the calling thread, the others on the pool. Returns once
    every share has finished, even when one raises (their buffers are the caller's), then raises the first
    error."""
    global _pool
    if shares <= 1:
        return [share(0)] if shares == 1 else []
    with _lock:  # submitted under the lock, so `configure` cannot shut this pool down in between
        if _pool is None:
            # The caller runs one share itself, so cap - 1 workers give one query all its threads.
            _pool = ThreadPoolExecutor(max(1, _max_threads - 1), thread_name_prefix="splade-share")
        futures: list[Future] = [_pool.submit(share, i) for i in range(1, shares)]
    try:
        first = share(0)
    finally:
        wait(futures)
    return [first] + [future.result() for future in futures]
