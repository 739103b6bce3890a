"""Exact scores of chosen documents from their forward rows (engine/kernels/forward_index.py), for the scorers
that pick candidates approximately: every score they return is the oracle's, bit for bit.

A query is registered in a per-thread table of query positions, uint16[vocab] with ABSENT where a term is not in
the query. A row's products go into a slot per query position (absent terms into one spare slot, a select
instead of a branch), then the slots are summed in query order: an absent term adds +0.0, which leaves a float32
sum as it was, so the sum is the oracle's. Unsigned 2-byte positions make the gather and the slot index cheap:
scoring 2,000 warm rows took 0.94 ms with them, 1.80 ms with int32 positions and -1 for absent (docs/index.md,
"Eighth round").
"""
from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.prefetch import prefetch_address
from engine.topk import best_hits, hit_key, key_buffer, key_score, push_key

ABSENT = 65535
MAX_QUERY_TERMS = ABSENT - 1  # positions 0..65533, so that the spare slot never collides with ABSENT
# How many candidates ahead the forward rows are prefetched (measured: 8 beat 0, 2 and 4).
PREFETCH_AHEAD = 8


def new_query_positions(vocab_size: int) -> np.ndarray:
    """The per-thread table register_query fills and clear_query empties: uint16[vocab_size] of ABSENT."""
    return np.full(vocab_size, ABSENT, dtype=np.uint16)


@njit(nogil=True, cache=True)
def register_query(term_ids, term_weights, scale, vocab_size, query_positions):
    """Give each in-vocabulary query term its position (query order, ids outside the vocabulary ignored):
    (terms int64, raw weights float32, oracle weights float32(w) x float32(scale), count). Raises ValueError
    on a duplicate term id or more than MAX_QUERY_TERMS terms, leaving the table as it found it."""
    scale32 = np.float32(scale)
    nq = term_ids.shape[0]
    terms = np.empty(nq, dtype=np.int64)
    raw = np.empty(nq, dtype=np.float32)
    weights = np.empty(nq, dtype=np.float32)
    count = 0
    for q in range(nq):
        term = term_ids[q]
        if term < 0 or term >= vocab_size:
            continue
        if query_positions[term] != ABSENT or count == MAX_QUERY_TERMS:
            clear_query(terms, count, query_positions)
            if count == MAX_QUERY_TERMS:
                raise ValueError("a query has at most 65,534 distinct terms")
            raise ValueError("duplicate term id in the query")
        query_positions[term] = count
        terms[count] = term
        raw[count] = term_weights[q]
        weights[count] = np.float32(term_weights[q]) * scale32
        count += 1
    return terms, raw, weights, count


@njit(nogil=True, cache=True)
def clear_query(terms, count, query_positions):
    for i in range(count):
        query_positions[terms[i]] = ABSENT


@njit(nogil=True, cache=True, inline="always")
def prefetch_rows(doc, doc_offsets, terms_address, impacts_address, impact_bytes):
    """Start loading a document's forward row (uint16 terms, impacts of `impact_bytes`) into the cache."""
    lo, hi = doc_offsets[doc], doc_offsets[doc + 1]
    for offset in range(lo * 2, hi * 2, 64):
        prefetch_address(terms_address + offset)
    for offset in range(lo * impact_bytes, hi * impact_bytes, 64):
        prefetch_address(impacts_address + offset)


@njit(nogil=True, cache=True, inline="always")
def _row_score(doc, doc_offsets, forward_terms, forward_impacts, query_positions, slot_weights, products):
    """The oracle's score of one document; `products` (all zeros, one slot per query term + the spare) is left
    all zeros."""
    spare = slot_weights.shape[0] - 1
    # The row as slices indexed from 0: LLVM then drops the negative-index fix-ups (4 of ~17 instructions an
    # entry; 2,000 warm rows 0.84 -> 0.72 ms).
    lo, hi = doc_offsets[doc], doc_offsets[doc + 1]
    row_terms = forward_terms[lo:hi]
    row_impacts = forward_impacts[lo:hi]
    for e in range(row_terms.shape[0]):
        slot = min(np.intp(query_positions[np.intp(row_terms[e])]), spare)
        products[slot] = slot_weights[slot] * np.float32(row_impacts[e])
    score = np.float32(0)
    for p in range(spare):
        score += products[p]
        products[p] = 0
    products[spare] = 0
    return score


@njit(nogil=True, cache=True)
def _slots(weights):
    slot_weights = np.zeros(weights.shape[0] + 1, dtype=np.float32)
    slot_weights[:weights.shape[0]] = weights
    return slot_weights, np.zeros(weights.shape[0] + 1, dtype=np.float32)


@njit(nogil=True, cache=True)
def rank_exact(candidates, k, doc_offsets, forward_terms, forward_impacts, query_positions, weights):
    """The k best of `candidates` (distinct document numbers) by their exact scores: (document numbers int64,
    float32 scores, best first by the tie rule, forward entries read). Rows are prefetched PREFETCH_AHEAD
    candidates ahead; `weights` are the registered query's oracle weights."""
    slot_weights, products = _slots(weights)
    k = max(0, min(k, candidates.shape[0]))
    keys = key_buffer(k)
    size = 0
    bar_key = np.uint64(0)
    bar = np.float32(0)
    entries = 0
    n = candidates.shape[0]
    terms_address = forward_terms.ctypes.data
    impacts_address = forward_impacts.ctypes.data
    impact_bytes = forward_impacts.itemsize
    for i in range(min(PREFETCH_AHEAD, n)):
        prefetch_rows(candidates[i], doc_offsets, terms_address, impacts_address, impact_bytes)
    for i in range(n if k > 0 else 0):
        if i + PREFETCH_AHEAD < n:
            prefetch_rows(candidates[i + PREFETCH_AHEAD], doc_offsets, terms_address, impacts_address,
                          impact_bytes)
        doc = candidates[i]
        entries += doc_offsets[doc + 1] - doc_offsets[doc]
        score = _row_score(doc, doc_offsets, forward_terms, forward_impacts, query_positions, slot_weights,
                           products)
        if score > 0 and score >= bar:
            key = hit_key(score, doc)
            if key > bar_key:
                size, bar_key = push_key(keys, size, k, key, bar_key)
                bar = key_score(bar_key)
    docs, scores = best_hits(keys, size, k)
    return docs, scores, entries


@njit(nogil=True, cache=True)
def rescore_in_order(docs, scores, doc_offsets, forward_terms, forward_impacts, query_positions, weights):
    """Replace approximate scores of hits (best first, e.g. dense dot products summed in row order) by the
    oracle's. The two differ in the last bits at most, so the order is re-settled by an insertion sort over an
    almost sorted array (score descending, then document ascending)."""
    slot_weights, products = _slots(weights)
    for i in range(docs.shape[0]):
        doc = docs[i]
        score = _row_score(doc, doc_offsets, forward_terms, forward_impacts, query_positions, slot_weights,
                           products)
        j = i
        while j > 0 and (scores[j - 1] < score or (scores[j - 1] == score and docs[j - 1] > doc)):
            scores[j] = scores[j - 1]
            docs[j] = docs[j - 1]
            j -= 1
        scores[j] = score
        docs[j] = doc
