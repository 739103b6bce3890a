"""Online recall monitor: a sample of live queries is re-scored by the exact scorer in the background, and the
served scorer's recall@k against it is exported as a Prometheus gauge.

Why: an approximate scorer is tuned once, on sample queries; as the corpus and the queries drift, its recall
can drift too. Here the operator sees it on the dashboard instead of guessing. Rules:
- only queries answered by an approximate scorer are sampled (a safe scorer is exact by definition);
- sampling is a fraction of those (`SPLADE_RECALL_SAMPLE_RATE`), decided by a seeded counter, not by time;
- the queue is bounded (`SPLADE_RECALL_QUEUE_LIMIT`): a sample that does not fit is dropped and counted, so
  the monitor never holds memory or requests back under load; it never runs on the request's path;
- a sample keeps its snapshot open (`Snapshot.retain`/`release`) until re-scored, so a hot swap cannot mix indexes;
- the gauge is the mean recall@k (each request's own k) over the last `SPLADE_RECALL_WINDOW` samples, per
  served scorer or tuned configuration.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass

from engine import ScoredQuery, SearchOptions, Searcher, Snapshot, SparseQuery

logger = logging.getLogger("service.recall")


@dataclass(frozen=True, slots=True)
class Sample:
    snapshot: Snapshot
    query: SparseQuery
    k: int
    served_by: str
    doc_numbers: tuple[int, ...]


class RecallMonitor:
    def __init__(self, searcher: Searcher, metrics, sample_rate: float, queue_limit: int, window: int) -> None:
        self.searcher = searcher
        self.metrics = metrics
        self.sample_rate = sample_rate
        self.window = window
        self._queue: queue.Queue[Sample | None] = queue.Queue(maxsize=queue_limit)
        self._recent: dict[str, deque[float]] = {}
        self._offered = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.sample_rate > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="splade-recall", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                self._drain()
                self._queue.put_nowait(None)
            self._thread.join(timeout=5)
            self._thread = None

    def offer(self, snapshot: Snapshot, query: SparseQuery, k: int, scored: ScoredQuery) -> None:
        """Called for every answered query (cheap): samples approximate answers at `sample_rate`."""
        if self.sample_rate <= 0 or snapshot.scorer(scored.scorer).safe:
            return
        with self._lock:
            self._offered += 1
            # Deterministic 1-in-(1/rate) sampling: evenly spread, and testable.
            take = int(self._offered * self.sample_rate) != int((self._offered - 1) * self.sample_rate)
        if not take:
            return
        snapshot.retain()  # released by the worker once re-scored (or when dropped)
        sample = Sample(snapshot, query, k, scored.scorer, tuple(hit.doc_number for hit in scored.hits))
        try:
            self._queue.put_nowait(sample)
        except queue.Full:
            snapshot.release()
            self.metrics.recall_samples.labels(outcome="dropped").inc()
            return
        self.metrics.recall_queue.set(self._queue.qsize())

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def recall(self, served_by: str) -> float | None:
        recent = self._recent.get(served_by)
        return sum(recent) / len(recent) if recent else None

    def _drain(self) -> None:
        while True:
            try:
                sample = self._queue.get_nowait()
            except queue.Empty:
                return
            if sample is not None:
                sample.snapshot.release()

    def _run(self) -> None:
        while True:
            sample = self._queue.get()
            if sample is None:
                self._drain()
                return
            try:
                exact = self.searcher.score(sample.snapshot, sample.query, SearchOptions(k=sample.k, scorer="exact"))
                want = {hit.doc_number for hit in exact.hits}
                recall = len(want & set(sample.doc_numbers)) / len(want) if want else 1.0
                recent = self._recent.setdefault(sample.served_by, deque(maxlen=self.window))
                recent.append(recall)
                self.metrics.recall.labels(scorer=sample.served_by).set(sum(recent) / len(recent))
                self.metrics.recall_samples.labels(outcome="scored").inc()
            except Exception:  # noqa: BLE001 - a monitor must never take the service down
                logger.exception("recall re-scoring failed")
                self.metrics.recall_samples.labels(outcome="failed").inc()
            finally:
                sample.snapshot.release()
                self.metrics.recall_queue.set(self._queue.qsize())
