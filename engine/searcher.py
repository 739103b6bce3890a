"""The one query path: tokenize -> encode -> prune -> score -> fetch ids/text. No HTTP, no batching queue.

The HTTP service (service.pipeline adds micro-batching, deadlines and a scoring pool around these stages), the
evaluation command and the benchmarks all call this class, so what is evaluated is what is served. Results are
typed; problems are domain errors (engine.errors): InvalidQueryError names the field and the limit.

Thread safety: `score` may run on several threads at once (each thread has its own scratch in the snapshot;
the kernels release the GIL); the index is read-only and the encoder is thread-safe.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from engine import filters, hybrid
from engine.errors import IncompatibleArtifactsError, InvalidQueryError, UnknownTokenError
from engine.fusion import FusionSpec
from engine.index_format import InvertedIndex
from engine.segments import open_searchable
from engine.query import SparseQuery, prune_query
from engine.snapshot import ServedIndex, Snapshot

# Padding allowed in one encoder call, as a fraction of its real tokens (see `length_groups`).
MAX_PADDING_FRACTION = 0.25


@dataclass(slots=True)
class StageTimes:
    """Seconds one query spent in each stage (`queue` is the service's micro-batching wait)."""

    tokenize: float = 0.0
    queue: float = 0.0
    encode: float = 0.0
    score: float = 0.0
    total: float = 0.0


STAGES: tuple[str, ...] = tuple(f.name for f in fields(StageTimes))


@dataclass(frozen=True, slots=True)
class SearchOptions:
    k: int = 10
    max_terms: int | None = None          # None: the searcher's limit
    include_text: bool = False
    explain: bool = False
    scorer: str | None = None             # None: the snapshot's default
    scorer_options: Mapping[str, Any] | None = None
    mode: str | None = None               # "splade" | "bm25" | "hybrid" (engine.hybrid); None: the searcher's
    fusion: FusionSpec | None = None      # hybrid only; None: the searcher's
    query_weight_mass: float | None = None   # engine.query_pruning: keep this share of the query's weight
    query_weight_ratio: float | None = None  # engine.query_pruning: drop terms below this ratio of the heaviest
    two_phase_ratio: float | None = None     # engine.two_phase: candidates from terms >= ratio x heaviest, rescored
    allowed: np.ndarray | None = None        # bool[num_documents]: the documents a hit may be (filters, deletes)
    filter: filters.Node | None = None       # engine.filters (parsed); its mask joins `allowed` at scoring time


@dataclass(slots=True)
class Hit:
    doc_number: int
    id: str
    score: float
    title: str | None = None
    text: str | None = None
    contributions: dict[str, float] | None = None
    subqueries: dict[str, dict] | None = None  # hybrid + explain: {"splade"|"bm25": {"score", "rank"}}
    passage: dict[str, int] | None = None      # passage index: {"index", "start", "end"} (engine.passages)


@dataclass(frozen=True, slots=True)
class ScoredQuery:
    hits: list[Hit]
    scorer: str
    stats: dict[str, int]
    score_s: float
    mode: str = "splade"

    @property
    def postings_traversed(self) -> int:
        return int(self.stats.get("postings_traversed", 0))


@dataclass(slots=True)
class SearchResult:
    query: SparseQuery
    hits: list[Hit]
    scorer: str
    stats: dict[str, int]
    timings: StageTimes = field(default_factory=StageTimes)
    query_terms: list[tuple[str, float]] | None = None  # (token, weight) of `query`; None unless asked for
    mode: str = "splade"
    generation: int = 0  # of the snapshot that answered (engine.snapshot; +1 on every swap)

    @property
    def postings_traversed(self) -> int:
        return int(self.stats.get("postings_traversed", 0))


@dataclass(frozen=True, slots=True)
class EncodedTexts:
    queries: list[SparseQuery]
    tokenize_s: float   # the whole call's tokenization
    encode_s: float     # the whole call's encoder time


def check_compatible(index: InvertedIndex, encoder: Any) -> None:
    """Raise IncompatibleArtifactsError unless index and encoder share vocabulary size and tokenizer."""
    problems = []
    if index.vocab_size != encoder.vocab_size:
        problems.append(f"vocab_size {index.vocab_size} (index) != {encoder.vocab_size} (model)")
    if index.tokenizer_sha256 != encoder.tokenizer_sha256:
        problems.append(f"tokenizer_sha256 {index.tokenizer_sha256[:12]}... (index) != "
                        f"{encoder.tokenizer_sha256[:12]}... (model)")
    if problems:
        raise IncompatibleArtifactsError(
            f"index {index.path} was built with another vocabulary than the query encoder: " + "; ".join(problems))


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


def with_filter_mask(options: SearchOptions, index: InvertedIndex) -> SearchOptions:
    """`options` with its `filter` evaluated on `index` into `allowed` (and-ed with any mask already there) and
    `filter` cleared, so that every retriever of one request shares the one mask, computed once."""
    if options.filter is None:
        return options
    mask = filters.allowed(index, options.filter)
    if mask is not None and options.allowed is not None:
        mask = mask & options.allowed
    return dataclasses.replace(options, filter=None, allowed=options.allowed if mask is None else mask)


def _positive_int(field_name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidQueryError(field_name, f"must be a positive integer, got {value!r}", 1)
    return int(value)


class Searcher:
    """Query encoder + served index + scorers. `max_query_terms` is the one query-term limit (None: no limit)."""

    def __init__(self, index: InvertedIndex | ServedIndex, encoder: Any, max_query_terms: int | None = None,
                 scorer: str | None = None, mode: str = "splade", fusion: FusionSpec | None = None,
                 filter_limits: filters.FilterLimits | None = None) -> None:
        served = index if isinstance(index, ServedIndex) else ServedIndex(index, scorer)
        check_compatible(served.current.index, encoder)
        if max_query_terms is not None and (isinstance(max_query_terms, bool) or max_query_terms < 1):
            raise ValueError(f"max_query_terms must be >= 1 or None, got {max_query_terms}")
        self.served = served
        self.encoder = encoder
        self.max_query_terms = max_query_terms
        # The server's default query mode and fusion (engine.hybrid); checked against the index now.
        self.mode = hybrid.check_mode(served.current.index, mode)
        self.fusion = (fusion or FusionSpec()).checked()
        self.filter_limits = filter_limits or filters.FilterLimits()

    @classmethod
    def from_paths(cls, index_dir: str | Path, model_dir: str | Path, runtime_options: Any = None, *,
                   max_query_terms: int | None = None, query_max_length: int | None = None,
                   verify_checksums: bool = False, scorer: str | None = None, mode: str = "splade",
                   fusion: FusionSpec | None = None, filter_limits: filters.FilterLimits | None = None) -> Searcher:
        from models.runtime import RuntimeOptions, load_query_encoder

        index = open_searchable(index_dir, verify_checksums=verify_checksums)  # plain or segmented (a generation)
        encoder = load_query_encoder(model_dir, runtime_options or RuntimeOptions(), max_length=query_max_length)
        return cls(index, encoder, max_query_terms=max_query_terms, scorer=scorer, mode=mode, fusion=fusion,
                   filter_limits=filter_limits)

    @property
    def index(self) -> InvertedIndex:
        """The index new searches use now (a search holds its own snapshot: see `acquire`)."""
        return self.served.current.index

    def acquire(self):
        """Context manager: the snapshot one search uses from start to end."""
        return self.served.acquire()

    def swap_index(self, index: InvertedIndex) -> Snapshot:
        """Serve `index` from the next search on (it must share the encoder's vocabulary; the snapshot rule
        keeps running searches on the index they started with)."""
        return self.served.install(self.prepare_swap(index, warm=False))

    def prepare_swap(self, index: InvertedIndex, warm: bool = True) -> Snapshot:
        """A validated (and, with `warm`, warmed) snapshot of `index`, not yet served: the same vocabulary as
        the encoder, the default scorer and the server's default mode servable, every scorer bound and run
        once. Raises IncompatibleArtifactsError / InvalidQueryError / IndexFormatError; nothing changes then."""
        check_compatible(index, self.encoder)
        hybrid.check_mode(index, self.mode)
        snapshot = self.served.prepare(index)
        if warm:
            self.warm_snapshot(snapshot)
        return snapshot

    def install(self, snapshot: Snapshot) -> Snapshot:
        """Serve a snapshot made by `prepare_swap` from the next search on."""
        return self.served.install(snapshot)

    def warm_snapshot(self, snapshot: Snapshot) -> None:
        """Bind every scorer of `snapshot` and run a real query through each, and through every mode."""
        query = self.encode_texts(["warm up"]).queries[0]
        for name in snapshot.choices:
            self.score(snapshot, query, SearchOptions(k=10, scorer=name))
        for mode in hybrid.available_modes(snapshot.index)[1:]:
            self.score_mode(snapshot, query, "warm up", SearchOptions(k=10, mode=mode))

    # -- stages ----------------------------------------------------------------------------------------------
    def resolve_max_terms(self, requested: int | None) -> int | None:
        """A request's query pruning: at most the searcher's limit (InvalidQueryError naming the limit if above)."""
        if requested is None:
            return self.max_query_terms
        requested = _positive_int("query_max_terms", requested)
        if self.max_query_terms is not None and requested > self.max_query_terms:
            raise InvalidQueryError("query_max_terms", f"{requested} exceeds the limit of {self.max_query_terms}",
                                    self.max_query_terms)
        return requested

    def encode_texts(self, texts: Sequence[str], max_terms: int | None = None) -> EncodedTexts:
        """Tokenize all texts at once, encode them in length-grouped calls, prune each to `max_terms`."""
        max_terms = self.resolve_max_terms(max_terms)
        t0 = time.perf_counter()
        batch = self.encoder.tokenize(list(texts))
        t1 = time.perf_counter()
        queries: list[SparseQuery | None] = [None] * len(texts)
        for rows in length_groups(batch.attention_mask.sum(axis=1)):
            group = type(batch)(batch.input_ids[rows], batch.attention_mask[rows]).rows(0, len(rows))
            for row, (ids, weights) in zip(rows.tolist(), self.encoder.encode_tokenized(group, max_terms)):
                queries[row] = SparseQuery(np.asarray(ids, np.int32), np.asarray(weights, np.float32))
        return EncodedTexts(queries, t1 - t0, time.perf_counter() - t1)

    def vector_query(self, vector: Mapping[str, float], max_terms: int | None = None,
                     field_name: str = "vector") -> SparseQuery:
        """A query from {token: weight}; InvalidQueryError / UnknownTokenError name the offending token."""
        max_terms = self.resolve_max_terms(max_terms)
        if not isinstance(vector, Mapping):
            raise InvalidQueryError(field_name, f"must be a mapping of token to weight, got {type(vector).__name__}")
        term_ids, weights = [], []
        for token, weight in vector.items():
            if not isinstance(token, str):
                raise InvalidQueryError(field_name, f"token {token!r} must be a string")
            if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)):
                raise InvalidQueryError(field_name, f"weight of token {token!r} must be a number, got {weight!r}")
            weight = float(weight)
            if not math.isfinite(weight):
                raise InvalidQueryError(field_name, f"weight of token {token!r} is not finite ({weight})")
            if weight < 0:
                raise InvalidQueryError(field_name, f"weight of token {token!r} is negative ({weight}); "
                                                    "weights must be >= 0", 0)
            term_id = self.encoder.token_id(token)
            if term_id is None:
                raise UnknownTokenError(token, field_name)
            if weight > 0:  # a zero weight cannot change any score
                term_ids.append(term_id)
                weights.append(weight)
        return prune_query(np.asarray(term_ids, np.int32), np.asarray(weights, np.float32), max_terms)

    def parse_filter(self, raw: Any, field_name: str = "filter") -> filters.Node | None:
        """A request's `filter` JSON, parsed within this searcher's limits (None: no filter)."""
        return None if raw is None else filters.parse(raw, self.filter_limits, field_name)

    def score(self, snapshot: Snapshot, query: SparseQuery, options: SearchOptions = SearchOptions()
              ) -> ScoredQuery:
        """The top-k of an encoded query on `snapshot`, with ids (and text, contributions when asked)."""
        started = time.perf_counter()
        k = _positive_int("k", options.k)
        index = snapshot.index
        query = SparseQuery(np.ascontiguousarray(query.term_ids, dtype=np.int32),
                            np.ascontiguousarray(query.weights, dtype=np.float32))
        if query.term_ids.ndim != 1 or query.term_ids.shape != query.weights.shape:
            raise InvalidQueryError("query", "term ids and weights must be 1-D arrays of the same length")
        if len(query) and (query.term_ids.min() < 0 or query.term_ids.max() >= index.vocab_size):
            raise InvalidQueryError("query", f"term ids must be in [0, {index.vocab_size})", index.vocab_size)
        if not np.all(np.isfinite(query.weights)) or (len(query) and query.weights.min() < 0):
            raise InvalidQueryError("query", "weights must be finite and >= 0", 0)
        options = with_filter_mask(options, index)
        top, served_by = snapshot.search(query, k, options.scorer, options.scorer_options, options.allowed)
        ids = index.external_ids(top.doc_numbers)
        rows = getattr(top, "passage_rows", None)  # a passage index names the passage behind each hit
        hits = []
        for i, (doc, doc_id, score) in enumerate(zip(top.doc_numbers.tolist(), ids, top.scores.tolist())):
            hit = Hit(doc, doc_id, score)
            if rows is not None:
                hit.passage = snapshot.passages.passage(int(rows[i]))
            if options.include_text:
                stored = index.document(doc)
                if stored is not None:
                    hit.title, hit.text = stored.get("title", ""), stored.get("text", "")
            if options.explain:  # the terms of what was scored: the document, or its passage
                hit.contributions = self.contributions(index, doc if rows is None else int(rows[i]), query)
            hits.append(hit)
        return ScoredQuery(hits, served_by, dict(top.stats), time.perf_counter() - started)

    def score_mode(self, snapshot: Snapshot, query: SparseQuery, text: str | None,
                   options: SearchOptions = SearchOptions()) -> ScoredQuery:
        """`score` in the request's mode: splade (that path), bm25 (needs `text`) or hybrid (engine.hybrid)."""
        return hybrid.score_mode(self, snapshot, query, text, options)

    def contributions(self, index: InvertedIndex, doc_number: int, query: SparseQuery) -> dict[str, float]:
        """Per query term, its part of the document's score (only the terms the document contains)."""
        parts: dict[str, float] = {}
        if hasattr(index, "locate"):  # a generation (engine.segments): the segment holding the document
            index, doc_number = index.locate(doc_number)
        scale = np.float32(index.scale)
        for term, weight in zip(query.term_ids.tolist(), query.weights.tolist()):
            docs, impacts = index.postings(term)
            pos = int(np.searchsorted(docs, doc_number))
            if pos < len(docs) and int(docs[pos]) == doc_number:
                parts[self.encoder.token(term)] = float((np.float32(weight) * scale) * np.float32(impacts[pos]))
        return parts

    def query_terms(self, query: SparseQuery) -> list[tuple[str, float]]:
        return [(self.encoder.token(t), float(w)) for t, w in zip(query.term_ids.tolist(), query.weights.tolist())]

    # -- one call ----------------------------------------------------------------------------------------------
    def search(self, query: str | Mapping[str, float], k: int = 10, query_max_terms: int | None = None,
               include_text: bool = False, explain: bool = False, scorer: str | None = None,
               scorer_options: Mapping[str, Any] | None = None, mode: str | None = None,
               fusion: FusionSpec | None = None, filter: Mapping[str, Any] | None = None) -> SearchResult:
        return self.search_batch([query], k=k, query_max_terms=query_max_terms, include_text=include_text,
                                 explain=explain, scorer=scorer, scorer_options=scorer_options, mode=mode,
                                 fusion=fusion, filter=filter)[0]

    def search_batch(self, queries: Sequence[str | Mapping[str, float]], k: int = 10,
                     query_max_terms: int | None = None, include_text: bool = False, explain: bool = False,
                     scorer: str | None = None, scorer_options: Mapping[str, Any] | None = None,
                     mode: str | None = None, fusion: FusionSpec | None = None,
                     filter: Mapping[str, Any] | None = None) -> list[SearchResult]:
        """Texts are tokenized and encoded together; vectors are taken as they are. One snapshot for all.
        `filter` (engine.filters) restricts every query to the documents it passes."""
        started = time.perf_counter()
        for position, q in enumerate(queries):
            if not isinstance(q, (str, Mapping)):
                raise InvalidQueryError(f"queries[{position}]", "must be a text or a {token: weight} mapping")
        options = SearchOptions(k, query_max_terms, include_text, explain, scorer, scorer_options, mode, fusion,
                                filter=self.parse_filter(filter))
        texts = [q for q in queries if isinstance(q, str)]
        encoded = self.encode_texts(texts, query_max_terms) if texts else EncodedTexts([], 0.0, 0.0)
        per_text = (encoded.tokenize_s / max(len(texts), 1), encoded.encode_s / max(len(texts), 1))
        text_queries = iter(encoded.queries)
        results = []
        with self.acquire() as snapshot:
            for q in queries:
                times = StageTimes()
                if isinstance(q, str):
                    sparse = next(text_queries)
                    times.tokenize, times.encode = per_text
                else:
                    t0 = time.perf_counter()
                    sparse = self.vector_query(q, query_max_terms)
                    times.encode = time.perf_counter() - t0
                scored = self.score_mode(snapshot, sparse, q if isinstance(q, str) else None, options)
                times.score = scored.score_s
                times.total = time.perf_counter() - started
                results.append(SearchResult(sparse, scored.hits, scored.scorer, scored.stats, times,
                                            self.query_terms(sparse), scored.mode, snapshot.generation))
        return results

    def warm_up(self) -> None:
        """Compile/load every available scorer and run the encoder once, so the first request is not slow."""
        self.search("warm up", k=10)
        with self.acquire() as snapshot:
            for name in snapshot.choices:
                self.score(snapshot, SparseQuery.empty(), SearchOptions(k=1, scorer=name))
            for mode in hybrid.available_modes(snapshot.index)[1:]:  # compiles the kernel for BM25's impacts
                self.score_mode(snapshot, SparseQuery.empty(), "warm up", SearchOptions(k=1, mode=mode))
