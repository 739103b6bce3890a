"""Exact scores of a given, small set of documents: the path for a mask that lets very few documents through.

Walking every posting of every query term costs the sum of the query's list lengths whatever the mask; when
only a few documents may be returned, looking each of them up in each query term's list (a binary search in
the term's ascending document numbers) costs documents x terms x log(list length) instead, and touches no
accumulator of index size. Scores are bit for bit the exact kernel's: every product is float32(float32(w) *
float32(scale)) * float32(impact), summed per document in query-term order.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from engine.topk import could_enter, offer, sorted_hits


@njit(nogil=True, cache=True)
def score_selected(offsets, doc_numbers, impacts, term_ids, term_weights, scale, k, selected):
    """Top-k (document numbers int64, scores float32, postings probed) over `selected` (int64, ascending,
    unique document numbers); ties to the lower document number; only scores > 0 are returned."""
    vocab_size = offsets.shape[0] - 1
    scale32 = np.float32(scale)
    sums = np.zeros(selected.shape[0], dtype=np.float32)
    probes = 0
    for q in range(term_ids.shape[0]):
        term = term_ids[q]
        if term < 0 or term >= vocab_size:
            continue
        weight = np.float32(term_weights[q]) * scale32
        lo, hi = offsets[term], offsets[term + 1]
        if lo == hi:
            continue
        docs = doc_numbers[lo:hi]
        term_impacts = impacts[lo:hi]
        positions = np.searchsorted(docs, selected)
        probes += selected.shape[0]
        for j in range(selected.shape[0]):
            p = positions[j]
            if p < docs.shape[0] and np.int64(docs[p]) == selected[j]:
                sums[j] += weight * np.float32(term_impacts[p])
    k = max(0, min(k, selected.shape[0]))
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    size = 0
    if k > 0:
        for j in range(selected.shape[0]):
            if sums[j] > 0 and could_enter(heap_scores, size, k, sums[j]):
                size = offer(heap_scores, heap_docs, size, k, sums[j], selected[j])
    docs_out, scores_out = sorted_hits(heap_scores, heap_docs, size)
    return docs_out, scores_out, probes
