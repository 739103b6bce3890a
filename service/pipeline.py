"""The online query path around a `Searcher`: micro-batched encoding, pooled scoring, deadlines, metrics.

The event loop only validates, queues and awaits. Encoding runs on one encoder thread (ONNX Runtime uses
`intra_op_threads` inside each call), fed by the `MicroBatcher`; scoring runs on `score_threads` threads
(the Numba kernels release the GIL). Texts are encoded with the server's maximum query terms and each
request keeps its own prefix (terms come weight-descending), which is what the `Searcher` keeps for the
same `query_max_terms`, so one batch can serve requests with different pruning.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from models.runtime import TokenizedBatch
from service.batching import Batched, DeadlineExceeded, MicroBatcher, QueueFull
from service.errors import InvalidRequestError, QueueFullError, RequestTimeoutError, detail
from service.metrics import ServiceMetrics
from service.searcher import Searcher, SparseQuery, UnknownTokenError
from service.settings import Settings

STAGES = ("tokenize", "queue", "encode", "score", "total")
# Padding allowed in one encoder call, as a fraction of its real tokens (see `length_groups`).
MAX_PADDING_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class EncodedText:
    query: SparseQuery
    tokenize_s: float  # the whole batch's tokenization (shared by its texts)
    encode_s: float  # the whole batch's encoder call
    scored: tuple | None = None  # (hits, postings, score_s) when scored on the encoder thread (lone query)


@dataclass(slots=True)
class PreparedQuery:
    """One request after validation: a text waiting for the encoder, or a vector already resolved."""

    text: str | None
    sparse: SparseQuery | None
    max_terms: int
    k: int
    include_text: bool
    explain: bool
    deadline: float = float("inf")


class QueryPipeline:
    def __init__(self, searcher: Searcher, settings: Settings, metrics: ServiceMetrics) -> None:
        self.searcher = searcher
        self.settings = settings
        self.metrics = metrics
        self._encode_pool = ThreadPoolExecutor(1, thread_name_prefix="splade-encode")
        self._score_pool = ThreadPoolExecutor(settings.score_threads, thread_name_prefix="splade-score")
        self._batcher: MicroBatcher[PreparedQuery, EncodedText] = MicroBatcher(
            self._encode_texts,
            max_batch_size=settings.encoder_max_batch_size,
            max_wait_s=settings.encoder_max_wait_ms / 1000.0,
            queue_limit=settings.queue_limit,
            executor=self._encode_pool,
            on_batch=metrics.encoder_batch_size.observe,
        )

    def start(self) -> None:
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.stop()
        self._encode_pool.shutdown(wait=False, cancel_futures=True)
        self._score_pool.shutdown(wait=False, cancel_futures=True)

    # -- preparation (event loop: cheap, and rejects bad vectors before any work is queued) --

    def prepare(self, request, field_prefix: str = "") -> PreparedQuery:
        max_terms = request.query_max_terms or self.settings.max_query_terms
        sparse = None
        if request.vector is not None:
            try:
                sparse = self.searcher.vector_query(request.vector, max_terms)
            except UnknownTokenError as exc:
                raise InvalidRequestError(
                    f"{field_prefix}vector: {exc}", [detail(f"{field_prefix}vector", str(exc))]
                ) from None
            except ValueError as exc:
                raise InvalidRequestError(
                    f"{field_prefix}vector: {exc}", [detail(f"{field_prefix}vector", str(exc))]
                ) from None
        return PreparedQuery(request.query, sparse, max_terms, request.k, request.include_text, request.explain)

    # -- execution --

    async def run(self, prepared: list[PreparedQuery], started: float) -> list[dict]:
        """Encode (batched), then score every query; one dict per query, in order, timings in seconds."""
        deadline = started + self.settings.request_timeout_s
        for p in prepared:
            p.deadline = deadline
        texts = [p for p in prepared if p.text is not None]
        try:
            encoded = await self._batcher.submit(texts, deadline) if texts else []
        except QueueFull as exc:
            self.metrics.rejected.labels(reason="queue_full").inc()
            raise QueueFullError(
                f"the encoder queue is full ({exc.pending} waiting, limit {exc.limit}); retry shortly",
                [detail("queue", "queue full", exc.limit)],
                headers={"Retry-After": "1"},
            ) from None
        except DeadlineExceeded:
            raise self._timed_out() from None

        stage_times: list[dict[str, float]] = []
        queries: list[SparseQuery] = []
        outcomes: list[tuple | None] = []
        texts_done = iter(encoded)
        for p in prepared:
            if p.text is None:
                queries.append(p.sparse)
                stage_times.append({"tokenize": 0.0, "queue": 0.0, "encode": 0.0})
                outcomes.append(None)
            else:
                item: Batched[EncodedText] = next(texts_done)
                queries.append(_keep_heaviest(item.value.query, p.max_terms))
                stage_times.append(
                    {"tokenize": item.value.tokenize_s, "queue": item.queue_s, "encode": item.value.encode_s}
                )
                outcomes.append(item.value.scored)

        loop = asyncio.get_running_loop()
        scoring = {
            i: loop.run_in_executor(self._score_pool, self._score, q, p, deadline)
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
        for sparse, p, times, (hits, postings, score_s) in zip(queries, prepared, stage_times, outcomes):
            times["score"] = score_s
            times["total"] = finished - started
            self.metrics.observe_stages(times)
            self.metrics.query_terms.observe(len(sparse.term_ids))
            self.metrics.postings_traversed.observe(postings)
            results.append(self._render(sparse, p, hits, postings, times))
        return results

    def _timed_out(self) -> RequestTimeoutError:
        self.metrics.rejected.labels(reason="timeout").inc()
        limit = self.settings.request_timeout_s
        return RequestTimeoutError(
            f"the search did not finish within {limit} s", [detail("request_timeout_s", "deadline exceeded", limit)]
        )

    def _encode_texts(self, jobs: list[PreparedQuery]) -> list[EncodedText]:
        """The batch function (encoder thread). A lone query is also scored here: there is no other query
        whose encoding its scoring could overlap with, and it saves two thread hand-offs (~0.3 ms idle, more
        on a busy machine). Batches of two or more are scored on the pool, overlapping the next batch."""
        texts = [job.text for job in jobs]
        t0 = time.perf_counter()
        batch = self.searcher.tokenize(texts)
        t1 = time.perf_counter()
        queries: list[SparseQuery | None] = [None] * len(texts)
        for rows in length_groups(batch.attention_mask.sum(axis=1)):
            group = TokenizedBatch(batch.input_ids[rows], batch.attention_mask[rows]).rows(0, len(rows))
            for row, query in zip(rows.tolist(), self.searcher.encode_tokenized(group, self.settings.max_query_terms)):
                queries[row] = query
        t2 = time.perf_counter()
        if len(jobs) == 1:
            job = jobs[0]
            scored = self._score(_keep_heaviest(queries[0], job.max_terms), job, job.deadline)
            return [EncodedText(queries[0], t1 - t0, t2 - t1, scored)]
        return [EncodedText(q, t1 - t0, t2 - t1) for q in queries]

    def _score(self, query: SparseQuery, p: PreparedQuery, deadline: float):
        t0 = time.perf_counter()
        if t0 >= deadline:
            raise DeadlineExceeded()
        hits, postings = self.searcher.score(query, p.k, include_text=p.include_text, explain=p.explain)
        return hits, postings, time.perf_counter() - t0

    def _render(self, sparse: SparseQuery, p: PreparedQuery, hits, postings: int, times: dict) -> dict:
        out_hits = []
        for hit in hits:
            item = {"id": hit.id, "score": float(hit.score)}
            if p.include_text:
                item["title"] = hit.title
                item["text"] = hit.text
            if p.explain:
                item["contributions"] = {t: float(v) for t, v in (hit.contributions or {}).items()}
            out_hits.append(item)
        body = {"hits": out_hits}
        if p.explain:
            body["query_terms"] = self.searcher.query_terms(sparse)
        body["postings_traversed"] = int(postings)
        body["timings_s"] = times
        return body


def length_groups(lengths: np.ndarray, max_padding: float = MAX_PADDING_FRACTION) -> list[np.ndarray]:
    """Row indices grouped by similar token length, so that padding is at most `max_padding` of the tokens.

    The encoder's cost grows with batch x longest length: one long query padded into a batch of short ones
    can cost more than batching saves. Rows sorted by length are cut into runs whose padded size stays
    within (1 + max_padding) x their real tokens.
    """
    order = np.argsort(lengths, kind="stable")
    groups: list[np.ndarray] = []
    start, real = 0, 0
    for end, row in enumerate(order):
        length = int(lengths[row])
        if end > start and (end - start + 1) * length > (1 + max_padding) * (real + length):
            groups.append(order[start:end])
            start, real = end, 0
        real += length
    if len(order):
        groups.append(order[start:])
    return groups


def _keep_heaviest(query: SparseQuery, max_terms: int) -> SparseQuery:
    if len(query.term_ids) <= max_terms:
        return query
    return SparseQuery(np.ascontiguousarray(query.term_ids[:max_terms]), np.ascontiguousarray(query.weights[:max_terms]))
