"""Two-phase query pruning (request option `two_phase_ratio`): retrieve candidates with the query's heavy terms,
then rescore them with the full query through a forward index.

Phase 1 runs the request's scorer with the terms of weight >= ratio x the heaviest (engine.query_pruning) for
`candidates(k)` = max(10k, 100) documents. Phase 2 rescores each candidate with every query term, looking the
terms up in the document's row of a forward index (document -> term ids ascending, impacts), and sums exactly
as the exact kernel does (float32(weight * scale) * impact, in query-term order): a rescored document has the
exact scorer's score, bit for bit, so the answer equals the exact top-k whenever phase 1's candidates hold it.

The forward index is derived from the opened index's postings on first use (a stable sort by document number,
so each row's terms ascend), once per index, in memory: 4 + impact bytes per posting.
"""
from __future__ import annotations

import threading
import time
import weakref

import numpy as np
from numba import njit

from engine.index_format import InvertedIndex
from engine.query import SparseQuery
from engine.query_pruning import prune


def candidates(k: int, num_documents: int) -> int:
    return max(1, min(num_documents, max(10 * k, 100)))


class ForwardIndex:
    def __init__(self, index: InvertedIndex) -> None:
        counts = np.diff(index.offsets)
        terms = np.repeat(np.arange(index.vocab_size, dtype=np.int32), counts)
        order = np.argsort(index.doc_numbers, kind="stable")
        self.term_ids = terms[order]
        self.impacts = np.asarray(index.impacts)[order]
        self.offsets = np.zeros(index.num_documents + 1, dtype=np.int64)
        np.cumsum(np.bincount(index.doc_numbers, minlength=index.num_documents), out=self.offsets[1:])


_FORWARD: weakref.WeakKeyDictionary[InvertedIndex, ForwardIndex] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def forward_of(index: InvertedIndex) -> ForwardIndex:
    with _LOCK:
        forward = _FORWARD.get(index)
        if forward is None:
            forward = _FORWARD[index] = ForwardIndex(index)
    return forward


@njit(nogil=True, cache=True)
def rescore(offsets, term_ids, impacts, query_terms, query_weights, scale, docs):
    """Full-query float32 scores of `docs`, summed in query-term order exactly as engine.kernels.exact does."""
    scale32 = np.float32(scale)
    out = np.zeros(docs.shape[0], dtype=np.float32)
    for i in range(docs.shape[0]):
        row_terms = term_ids[offsets[docs[i]]:offsets[docs[i] + 1]]
        row_impacts = impacts[offsets[docs[i]]:offsets[docs[i] + 1]]
        total = np.float32(0)
        for q in range(query_terms.shape[0]):
            pos = np.searchsorted(row_terms, query_terms[q])
            if pos < row_terms.shape[0] and row_terms[pos] == query_terms[q]:
                total += np.float32(query_weights[q]) * scale32 * np.float32(row_impacts[pos])
        out[i] = total
    return out


def search(snapshot, query: SparseQuery, k: int, ratio: float, scorer: str | None, scorer_options,
           allowed: np.ndarray | None = None):
    """(TopK-like doc numbers int64, scores float32, stats) of the two-phase search; candidates come only from
    the documents `allowed` lets through (None: all)."""
    index = snapshot.index
    heavy = prune(query, ratio=ratio)
    top, served_by = snapshot.search(heavy, candidates(k, index.num_documents), scorer, scorer_options, allowed)
    started = time.perf_counter()
    forward = forward_of(index)
    docs = np.ascontiguousarray(top.doc_numbers, dtype=np.int64)
    scores = rescore(forward.offsets, forward.term_ids, forward.impacts, query.term_ids, query.weights,
                     np.float32(index.scale), docs)
    order = np.lexsort((docs, -scores))[:k]
    keep = scores[order] > 0
    stats = dict(top.stats)
    stats["two_phase_candidates"] = int(len(docs))
    stats["two_phase_terms"] = int(len(heavy))
    stats["rescore_us"] = int((time.perf_counter() - started) * 1e6)
    return docs[order][keep], scores[order][keep], stats, served_by
