"""The plain-Python search engine: query encoder + inverted index + exact scorer. No HTTP.

The HTTP app, `service.evaluate` and the benchmarks all go through this class, so what is evaluated is what is
served. The staged methods (tokenize -> encode_tokenized -> score) let the service micro-batch the encoder and
time each stage. Thread safety: `score` may be called from several threads at once; each thread gets its own
accumulator (the kernel releases the GIL), the index is read-only and the encoder is thread-safe.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index_builder.index_format import InvertedIndex, open_index
from service.scoring import score_exact


class IncompatibleArtifactsError(Exception):
    """The index was built with another vocabulary or tokenizer than the query encoder's."""


class UnknownTokenError(ValueError):
    """A vector query names a token that is not in the vocabulary."""

    def __init__(self, token: str) -> None:
        super().__init__(f"unknown token {token!r}: not in the model's vocabulary")
        self.token = token


@dataclass(frozen=True)
class SparseQuery:
    term_ids: np.ndarray   # int32, weight descending
    weights: np.ndarray    # float32, > 0


@dataclass(slots=True)
class Hit:
    doc_number: int
    id: str
    score: float
    title: str | None = None
    text: str | None = None
    contributions: dict[str, float] | None = None


@dataclass
class SearchResult:
    hits: list[Hit]
    query_terms: list[tuple[str, float]]
    postings_traversed: int
    timings: dict[str, float] = field(default_factory=dict)


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


def _top_terms(term_ids: np.ndarray, weights: np.ndarray, max_terms: int | None) -> SparseQuery:
    """Weight-descending (ties: lower term id) and cut to max_terms."""
    order = np.lexsort((term_ids, -weights))
    if max_terms is not None:
        order = order[:max_terms]
    return SparseQuery(term_ids[order].astype(np.int32), weights[order].astype(np.float32))


class Searcher:
    def __init__(self, index: InvertedIndex, encoder: Any, query_max_terms: int | None = None) -> None:
        check_compatible(index, encoder)
        if query_max_terms is not None and query_max_terms < 1:
            raise ValueError(f"query_max_terms must be >= 1 or None, got {query_max_terms}")
        self.index = index
        self.encoder = encoder
        self.query_max_terms = query_max_terms
        self._scale = np.float32(index.scale)
        self._local = threading.local()

    @classmethod
    def from_paths(cls, index_dir: str | Path, model_dir: str | Path, runtime_options: Any = None, *,
                   query_max_terms: int | None = None, query_max_length: int | None = None,
                   verify_checksums: bool = False) -> Searcher:
        from models.runtime import RuntimeOptions, load_query_encoder

        index = open_index(index_dir, verify_checksums=verify_checksums)
        encoder = load_query_encoder(model_dir, runtime_options or RuntimeOptions(), max_length=query_max_length)
        return cls(index, encoder, query_max_terms=query_max_terms)

    # -- staged API ---------------------------------------------------------------------------------------
    def resolve_max_terms(self, max_terms: int | None) -> int | None:
        """A request's query pruning: at most the searcher's limit (ValueError naming the limit if above)."""
        if max_terms is None:
            return self.query_max_terms
        if isinstance(max_terms, bool) or not isinstance(max_terms, (int, np.integer)) or max_terms < 1:
            raise ValueError(f"query_max_terms must be a positive integer, got {max_terms!r}")
        if self.query_max_terms is not None and max_terms > self.query_max_terms:
            raise ValueError(f"query_max_terms {max_terms} exceeds the limit of {self.query_max_terms}")
        return int(max_terms)

    def tokenize(self, texts: Sequence[str]):
        return self.encoder.tokenize(texts)

    def encode_tokenized(self, batch, max_terms: int | None = None) -> list[SparseQuery]:
        max_terms = self.resolve_max_terms(max_terms)
        return [SparseQuery(np.asarray(ids, np.int32), np.asarray(w, np.float32))
                for ids, w in self.encoder.encode_tokenized(batch, max_terms)]

    def vector_query(self, vector: Mapping[str, float], max_terms: int | None = None) -> SparseQuery:
        """A query from {token: weight}; UnknownTokenError / ValueError name the offending token."""
        max_terms = self.resolve_max_terms(max_terms)
        if not isinstance(vector, Mapping):
            raise ValueError(f"vector must be a mapping of token to weight, got {type(vector).__name__}")
        term_ids, weights = [], []
        for token, weight in vector.items():
            if not isinstance(token, str):
                raise ValueError(f"vector token {token!r} must be a string")
            if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)):
                raise ValueError(f"weight of token {token!r} must be a number, got {weight!r}")
            weight = float(weight)
            if not math.isfinite(weight):
                raise ValueError(f"weight of token {token!r} is not finite ({weight})")
            if weight < 0:
                raise ValueError(f"weight of token {token!r} is negative ({weight}); weights must be >= 0")
            term_id = self.encoder.token_id(token)
            if term_id is None:
                raise UnknownTokenError(token)
            if weight > 0:  # a zero weight cannot change any score
                term_ids.append(term_id)
                weights.append(weight)
        return _top_terms(np.asarray(term_ids, np.int32), np.asarray(weights, np.float32), max_terms)

    def _accumulator(self) -> np.ndarray:
        acc = getattr(self._local, "accumulator", None)
        if acc is None:
            acc = self._local.accumulator = np.zeros(self.index.num_documents, dtype=np.float32)
        return acc

    def score(self, query: SparseQuery, k: int = 10, include_text: bool = False,
              explain: bool = False) -> tuple[list[Hit], int]:
        """The k best documents for an encoded query, and the number of postings traversed."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        term_ids = np.ascontiguousarray(query.term_ids, dtype=np.int32)
        weights = np.ascontiguousarray(query.weights, dtype=np.float32)
        if term_ids.shape != weights.shape or term_ids.ndim != 1:
            raise ValueError("query term_ids and weights must be 1-D arrays of the same length")
        if len(term_ids) and (term_ids.min() < 0 or term_ids.max() >= self.index.vocab_size):
            raise ValueError(f"query term ids must be in [0, {self.index.vocab_size})")
        if not np.all(np.isfinite(weights)) or (len(weights) and weights.min() < 0):
            raise ValueError("query weights must be finite and >= 0")
        docs, scores, postings = score_exact(
            self.index.offsets, self.index.doc_numbers, self.index.impacts, term_ids, weights,
            self._scale, int(k), self._accumulator())
        hits = []
        ids = self.index.external_ids(docs)
        for doc, doc_id, score in zip(docs.tolist(), ids, scores.tolist()):
            hit = Hit(doc, doc_id, score)
            if include_text:
                stored = self.index.document(doc)
                if stored is not None:
                    hit.title, hit.text = stored.get("title", ""), stored.get("text", "")
            if explain:
                hit.contributions = self.contributions(doc, term_ids, weights)
            hits.append(hit)
        return hits, int(postings)

    def contributions(self, doc_number: int, term_ids: np.ndarray, weights: np.ndarray) -> dict[str, float]:
        """Per query term, its part of the document's score (only the terms the document contains)."""
        parts: dict[str, float] = {}
        for term, weight in zip(term_ids.tolist(), weights.tolist()):
            docs, impacts = self.index.postings(term)
            pos = int(np.searchsorted(docs, doc_number))
            if pos < len(docs) and int(docs[pos]) == doc_number:
                part = (np.float32(weight) * self._scale) * np.float32(impacts[pos])
                parts[self.encoder.token(term)] = float(part)
        return parts

    def query_terms(self, query: SparseQuery) -> list[tuple[str, float]]:
        return [(self.encoder.token(t), float(w)) for t, w in zip(query.term_ids.tolist(), query.weights.tolist())]

    # -- one-call API ---------------------------------------------------------------------------------------
    def search(self, query: str | Mapping[str, float], k: int = 10, query_max_terms: int | None = None,
               include_text: bool = False, explain: bool = False) -> SearchResult:
        return self.search_batch([query], k=k, query_max_terms=query_max_terms, include_text=include_text,
                                 explain=explain)[0]

    def search_batch(self, queries: Sequence[str | Mapping[str, float]], k: int = 10,
                     query_max_terms: int | None = None, include_text: bool = False,
                     explain: bool = False) -> list[SearchResult]:
        """Texts are tokenized and encoded as one batch; vectors are taken as they are."""
        started = time.perf_counter()
        texts = [q for q in queries if isinstance(q, str)]
        for position, q in enumerate(queries):
            if not isinstance(q, (str, Mapping)):
                raise ValueError(f"queries[{position}] must be a text or a {{token: weight}} mapping")
        t0 = time.perf_counter()
        batch = self.tokenize(texts) if texts else None
        t1 = time.perf_counter()
        encoded = iter(self.encode_tokenized(batch, query_max_terms) if texts else [])
        t2 = time.perf_counter()
        per_query_text = ((t1 - t0) / len(texts), (t2 - t1) / len(texts)) if texts else (0.0, 0.0)
        results = []
        for q in queries:
            if isinstance(q, str):
                sparse = next(encoded)
                tokenize_s, encode_s = per_query_text
            else:
                s0 = time.perf_counter()
                sparse = self.vector_query(q, query_max_terms)
                tokenize_s, encode_s = 0.0, time.perf_counter() - s0
            s1 = time.perf_counter()
            hits, postings = self.score(sparse, k, include_text=include_text, explain=explain)
            score_s = time.perf_counter() - s1
            results.append(SearchResult(
                hits=hits, query_terms=self.query_terms(sparse), postings_traversed=postings,
                timings={"tokenize": tokenize_s, "encode": encode_s, "score": score_s,
                         "total": time.perf_counter() - started}))
        return results

    def warm_up(self) -> None:
        """Compile/load the scoring kernel and run the encoder once, so the first request is not slow."""
        self.search("warm up", k=10)
        self.score(SparseQuery(np.zeros(0, np.int32), np.zeros(0, np.float32)), k=1)
