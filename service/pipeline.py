"""The online query path around an `engine.Searcher`: micro-batched encoding, pooled scoring, deadlines, metrics.

The event loop only validates, queues and awaits. Encoding runs on one encoder thread (ONNX Runtime uses
`intra_op_threads` inside each call), fed by the `MicroBatcher`; scoring runs on `score_threads` threads
(the Numba kernels release the GIL). Texts are encoded with the server's maximum query terms and each
request keeps its own prefix (terms come weight-descending), which is what the `Searcher` keeps for the
same `query_max_terms`, so one batch can serve requests with different pruning.

Each request takes one snapshot of the served index when it starts and scores on it to the end (the engine's
snapshot rule). Problems are raised as engine errors (InvalidQueryError, OverloadedError,
DeadlineExceededError); only the HTTP layer (service/errors.py) turns them into status codes.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from engine import (DeadlineExceededError, InvalidQueryError, OverloadedError, ScoredQuery, SearchOptions, SearchResult, Searcher,
                    Snapshot, SparseQuery, StageTimes)
from engine.hybrid import check_mode
from service.batch_policy import batch_token_budget, estimated_tokens
from service.batching import Batched, DeadlineExceeded, MicroBatcher, QueueFull
from service.hybrid_options import hybrid_options, pruning_options
from service.metrics import ServiceMetrics
from service.recall_monitor import RecallMonitor
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class EncodedText:
    query: SparseQuery
    tokenize_s: float  # the whole batch's tokenization (shared by its texts)
    encode_s: float  # the whole batch's encoder call
    scored: ScoredQuery | None = None  # when scored on the encoder thread (lone query)


@dataclass(slots=True)
class PreparedQuery:
    """One request after validation: a text waiting for the encoder, or a vector already resolved."""

    text: str | None
    sparse: SparseQuery | None
    options: SearchOptions
    field_prefix: str = ""  # "queries[3]." inside a batch request: error fields name the query
    snapshot: Snapshot | None = None
    deadline: float = float("inf")
    times: StageTimes = field(default_factory=StageTimes)


class QueryPipeline:
    def __init__(self, searcher: Searcher, settings: Settings, metrics: ServiceMetrics) -> None:
        self.searcher = searcher
        self.settings = settings
        self.metrics = metrics
        self._encode_pool = ThreadPoolExecutor(1, thread_name_prefix="splade-encode")
        self._score_pool = ThreadPoolExecutor(settings.score_threads, thread_name_prefix="splade-score")
        encoder = searcher.encoder
        self.batch_tokens = batch_token_budget(settings.encoder_max_batch_tokens, encoder.provider)
        max_length = encoder.max_length
        self._batcher: MicroBatcher[PreparedQuery, EncodedText] = MicroBatcher(
            self._encode_texts,
            max_batch_size=settings.encoder_max_batch_size,
            max_wait_s=settings.encoder_max_wait_ms / 1000.0,
            queue_limit=settings.queue_limit,
            executor=self._encode_pool,
            on_batch=metrics.encoder_batch_size.observe,
            cost=lambda job: estimated_tokens(job.text, max_length),
            max_batch_cost=self.batch_tokens,
        )
        self.recall_monitor = RecallMonitor(searcher, metrics, settings.recall_sample_rate,
                                            settings.recall_queue_limit, settings.recall_window)

    def start(self) -> None:
        self._batcher.start()
        self.recall_monitor.start()

    async def stop(self) -> None:
        await self._batcher.stop()
        self.recall_monitor.stop()
        self._encode_pool.shutdown(wait=False, cancel_futures=True)
        self._score_pool.shutdown(wait=False, cancel_futures=True)

    # -- preparation (event loop: cheap, and rejects bad vectors before any work is queued) --

    def prepare(self, request: Any, field_prefix: str = "") -> PreparedQuery:
        max_terms = self.searcher.resolve_max_terms(request.query_max_terms)
        try:
            options = SearchOptions(request.k, max_terms, request.include_text, request.explain,
                                    request.scorer, request.scorer_options, *hybrid_options(self.searcher, request),
                                    *pruning_options(self.settings, request))
        except InvalidQueryError as exc:  # inside a batch, name the query too
            raise InvalidQueryError(field_prefix + exc.field, exc.message, exc.limit) from None
        sparse = None
        if request.vector is not None:
            sparse = self.searcher.vector_query(request.vector, max_terms, field_name=f"{field_prefix}vector")
        return PreparedQuery(request.query, sparse, options, field_prefix)

    # -- execution --

    async def run(self, prepared: list[PreparedQuery], started: float) -> list[SearchResult]:
        """Encode (batched), then score every query on one snapshot; results in order, timings filled in."""
        deadline = started + self.settings.request_timeout_s
        with self.searcher.acquire() as snapshot:
            for p in prepared:
                _check_scorer(snapshot, p)  # before any encoder work is spent on the request
                p.deadline = deadline
                p.snapshot = snapshot
            return await self._run(prepared, started, deadline)

    async def _run(self, prepared: list[PreparedQuery], started: float, deadline: float) -> list[SearchResult]:
        texts = [p for p in prepared if p.text is not None]
        try:
            encoded = await self._batcher.submit(texts, deadline) if texts else []
        except QueueFull as exc:
            self.metrics.rejected.labels(reason="queue_full").inc()
            raise OverloadedError(exc.pending, exc.limit) from None
        except DeadlineExceeded:
            raise self._timed_out() from None

        queries: list[SparseQuery] = []
        outcomes: list[ScoredQuery | None] = []
        texts_done = iter(encoded)
        for p in prepared:
            if p.text is None:
                queries.append(p.sparse)
                outcomes.append(None)
            else:
                item: Batched[EncodedText] = next(texts_done)
                queries.append(item.value.query.keep_heaviest(p.options.max_terms))
                p.times.tokenize, p.times.queue, p.times.encode = (
                    item.value.tokenize_s, item.queue_s, item.value.encode_s)
                outcomes.append(item.value.scored)

        loop = asyncio.get_running_loop()
        scoring = {
            i: loop.run_in_executor(self._score_pool, self._score, q, p)
            for i, (q, p, done) in enumerate(zip(queries, prepared, outcomes))
            if done is None
        }
        if scoring:
            remaining = deadline - time.perf_counter()
            try:
                scored = await asyncio.wait_for(asyncio.gather(*scoring.values()), max(remaining, 0.0))
            except (TimeoutError, DeadlineExceeded):
                for future in scoring.values():
                    future.cancel()  # not-yet-started scoring never runs
                raise self._timed_out() from None
            for i, outcome in zip(scoring, scored):
                outcomes[i] = outcome

        finished = time.perf_counter()
        results = []
        for sparse, p, outcome in zip(queries, prepared, outcomes):
            p.times.score = outcome.score_s
            p.times.total = finished - started
            self.metrics.observe_stages(p.times)
            self.metrics.query_terms.observe(len(sparse))
            self.metrics.postings_traversed.observe(outcome.postings_traversed)
            if outcome.mode == "splade" and not _query_pruned(p.options):  # same query, other scorer: comparable
                self.recall_monitor.offer(p.snapshot, sparse, p.options.k, outcome)
            terms = self.searcher.query_terms(sparse) if p.options.explain else None
            results.append(SearchResult(sparse, outcome.hits, outcome.scorer, outcome.stats, p.times, terms,
                                        outcome.mode, p.snapshot.generation))
        return results

    def _timed_out(self) -> DeadlineExceededError:
        self.metrics.rejected.labels(reason="timeout").inc()
        return DeadlineExceededError(self.settings.request_timeout_s)

    def _encode_texts(self, jobs: list[PreparedQuery]) -> list[EncodedText]:
        """The batch function (encoder thread). A lone query is also scored here: there is no other query
        whose encoding its scoring could overlap with, and it saves two thread hand-offs (~0.3 ms idle, more
        on a busy machine). Batches of two or more are scored on the pool, overlapping the next batch."""
        encoded = self.searcher.encode_texts([job.text for job in jobs])
        if len(jobs) == 1:
            job, query = jobs[0], encoded.queries[0]
            scored = self._score(query.keep_heaviest(job.options.max_terms), job)
            return [EncodedText(query, encoded.tokenize_s, encoded.encode_s, scored)]
        return [EncodedText(q, encoded.tokenize_s, encoded.encode_s) for q in encoded.queries]

    def _score(self, query: SparseQuery, p: PreparedQuery) -> ScoredQuery:
        if time.perf_counter() >= p.deadline:
            raise DeadlineExceeded()
        return self.searcher.score_mode(p.snapshot, query, p.text, p.options)


def _check_scorer(snapshot: Snapshot, p: PreparedQuery) -> None:
    """The requested scorer is served by this snapshot's index and its options are within their limits."""
    try:
        snapshot.scorer(p.options.scorer)
        snapshot.options(p.options.scorer, p.options.scorer_options)
        check_mode(snapshot.index, p.options.mode, p.text is not None)
    except InvalidQueryError as exc:
        raise InvalidQueryError(p.field_prefix + exc.field, exc.message, exc.limit) from None


def _query_pruned(options: SearchOptions) -> bool:
    """A request pruned its query beyond `max_terms`: its answer is not the served scorer's alone."""
    return any(v is not None for v in (options.query_weight_mass, options.query_weight_ratio, options.two_phase_ratio))
