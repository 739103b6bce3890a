"""Small seeded collections for the kernel tests, generated with numpy (no benchmark data at test time).

Each returns the inverted index arrays the kernels take (offsets int64[V+1], doc_numbers uint32 ascending per
term, impacts uint8 >= 1, scale) and queries (unique term ids int32, float32 weights, weight-descending).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Collection:
    offsets: np.ndarray
    doc_numbers: np.ndarray
    impacts: np.ndarray
    scale: np.float32
    num_documents: int
    queries: list[tuple[np.ndarray, np.ndarray]]

    @property
    def vocab_size(self) -> int:
        return len(self.offsets) - 1


def invert(doc_of: np.ndarray, term_of: np.ndarray, impacts: np.ndarray, vocab: int) -> tuple:
    """Postings (document, term, impact) with unique (document, term) pairs -> term-major arrays."""
    order = np.lexsort((doc_of, term_of))
    offsets = np.zeros(vocab + 1, dtype=np.int64)
    np.cumsum(np.bincount(term_of, minlength=vocab), out=offsets[1:])
    return offsets, doc_of[order].astype(np.uint32), impacts[order].astype(np.uint8)


def _unique_pairs(doc_of: np.ndarray, term_of: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys, first = np.unique(doc_of.astype(np.int64) * vocab + term_of, return_index=True)
    return keys // vocab, keys % vocab, first


def _queries(rng, vocab: int, count: int, terms: int, popularity: np.ndarray | None = None):
    queries = []
    for _ in range(count):
        n = int(rng.integers(1, terms + 1))
        ids = rng.choice(vocab, size=min(n, vocab), replace=False, p=popularity).astype(np.int32)
        weights = rng.lognormal(0.0, 0.6, size=len(ids)).astype(np.float32)
        order = np.lexsort((ids, -weights))
        queries.append((ids[order], weights[order]))
    return queries


def collection(kind: str, num_documents: int = 4000, vocab: int = 600, num_queries: int = 40,
               seed: int = 0) -> Collection:
    """kind: 'random' (uniform terms and impacts), 'heavy' (Zipf document frequencies, a head term in 90% of
    documents, lognormal weights) or 'real_like' (topics: each document and query draws most of its terms from
    one topic's vocabulary, plus head terms, with weights falling with popularity, as SPLADE output does)."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        per_doc = rng.integers(1, 30, size=num_documents)
        doc_of = np.repeat(np.arange(num_documents), per_doc)
        term_of = rng.integers(0, vocab, size=len(doc_of))
        doc_of, term_of, _ = _unique_pairs(doc_of, term_of, vocab)
        impacts = rng.integers(1, 256, size=len(doc_of))
        queries = _queries(rng, vocab, num_queries, 30)
    elif kind == "heavy":
        popularity = 1.0 / (np.arange(vocab) + 5.0) ** 1.1
        popularity /= popularity.sum()
        per_doc = rng.poisson(40, size=num_documents) + 1
        doc_of = np.repeat(np.arange(num_documents), per_doc)
        term_of = rng.choice(vocab, size=len(doc_of), p=popularity)
        head = np.flatnonzero(rng.random(num_documents) < 0.9)
        doc_of = np.concatenate([doc_of, head])
        term_of = np.concatenate([term_of, np.zeros(len(head), dtype=term_of.dtype)])
        doc_of, term_of, _ = _unique_pairs(doc_of, term_of, vocab)
        weights = rng.lognormal(0.0, 0.8, size=len(doc_of)) * (0.3 + np.log1p(term_of) / np.log(vocab))
        impacts = np.clip(np.rint(weights / weights.max() * 255), 1, 255)
        queries = _queries(rng, vocab, num_queries, 40, np.sqrt(popularity) / np.sqrt(popularity).sum())
    elif kind == "real_like":
        topics, head_terms = 20, 30
        topic_vocab = (vocab - head_terms) // topics
        doc_topic = rng.integers(0, topics, size=num_documents)
        per_doc = rng.poisson(50, size=num_documents) + 5
        doc_of = np.repeat(np.arange(num_documents), per_doc)
        in_topic = rng.random(len(doc_of)) < 0.7
        topic_terms = head_terms + doc_topic[doc_of] * topic_vocab + \
            np.minimum(rng.zipf(1.3, size=len(doc_of)) - 1, topic_vocab - 1)
        background = rng.integers(0, vocab, size=len(doc_of))
        term_of = np.where(in_topic, topic_terms, background)
        doc_of, term_of, _ = _unique_pairs(doc_of, term_of, vocab)
        rarity = np.where(term_of < head_terms, 0.15, 0.5 + rng.random(len(term_of)))
        weights = rng.lognormal(0.0, 0.5, size=len(doc_of)) * rarity
        impacts = np.clip(np.rint(weights / weights.max() * 255), 1, 255)
        queries = []
        for _ in range(num_queries):
            topic = int(rng.integers(0, topics))
            own = head_terms + topic * topic_vocab + rng.choice(topic_vocab, size=int(rng.integers(5, 25)),
                                                                replace=False)
            extra = rng.choice(vocab, size=int(rng.integers(0, 20)), replace=False)
            ids = np.unique(np.concatenate([own, extra])).astype(np.int32)
            weights_q = (rng.lognormal(0.0, 0.5, size=len(ids)) *
                         np.where(ids < head_terms, 0.2, 1.0)).astype(np.float32)
            order = np.lexsort((ids, -weights_q))
            queries.append((ids[order], weights_q[order]))
    else:
        raise ValueError(kind)
    offsets, doc_numbers, impacts = invert(doc_of, term_of, impacts, vocab)
    return Collection(offsets, doc_numbers, impacts, np.float32(0.0123), num_documents, queries)


def widened(c: Collection, seed: int = 0) -> Collection:
    """The collection with uint16 impacts: each uint8 impact x 257 plus jitter of up to +-128 (the finer values a
    16-bit index keeps: ties among uint8 impacts are broken), scale / 257 so the weights stay the same."""
    rng = np.random.default_rng(seed)
    jitter = rng.integers(-128, 129, size=len(c.impacts))
    impacts = np.clip(c.impacts.astype(np.int64) * 257 + jitter, 1, 65535).astype(np.uint16)
    return Collection(c.offsets, c.doc_numbers, impacts, np.float32(c.scale / 257), c.num_documents, c.queries)


def brute_force_scores(c: Collection, term_ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Every document's exact float32 score: the oracle's products, summed in query-term order."""
    acc = np.zeros(c.num_documents, dtype=np.float32)
    for term, weight in zip(term_ids, weights):
        if not 0 <= term < c.vocab_size:
            continue
        lo, hi = c.offsets[term], c.offsets[term + 1]
        acc[c.doc_numbers[lo:hi]] += (np.float32(weight) * c.scale) * c.impacts[lo:hi].astype(np.float32)
    return acc


def brute_force_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of positive scores, score descending, ties to the lower document number."""
    matching = np.flatnonzero(scores > 0)
    order = np.lexsort((matching, -scores[matching]))[:k]
    return matching[order], scores[matching[order]]
