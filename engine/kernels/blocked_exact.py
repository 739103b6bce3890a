"""Cache-blocked exact scoring: the exact oracle's results, bit for bit, with the accumulator kept in L2.

The oracle (term-at-a-time over the whole index) adds each posting into a float32 accumulator of one entry per
document: 4 MB at 1M documents, which misses a 0.5-2 MB L2 on every scattered add. Here the documents are cut
into ranges of `range_size` documents; at open time `prepare_ranges` records, for every term, the posting
position where each range starts (postings are in ascending document order, so a range of a term's list is a
contiguous slice). A query then walks range by range: every query term's postings of that range go into an
accumulator slice of `range_size` floats (L2-resident), the slice is scanned into one top-k heap and cleared
while still in cache.

Equal to the oracle bit for bit, by construction:
- each posting adds float32(float32(w_q) * float32(scale)) * float32(impact), the same float32 operations;
- within a range the terms are walked in query order, so every document sums its products in query-term
  order, as the oracle does;
- ranges go in ascending document order and the heap keeps ties to the lower document number, so the top-k
  (score descending, ties to the lower document) is the same set in the same order.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.exact import NO_MASK
from engine.topk import offer, sift_down, sift_up, sorted_hits

# 32K documents x 4 bytes = 128 KB of accumulator: a quarter of the 512 KB L2 of the AMD EPYC this was
# measured on (16K and 32K were best there, 64K and 128K slower), well inside the 2 MB L2 of the Intel Xeon of
# the reference figures (docs/index.md, "Faster exact scoring").
DEFAULT_RANGE_SIZE = 32768
MIN_RANGE_SIZE = 1024
MAX_RANGE_SIZE = 1 << 22
# In a range whose postings * SPARSE_FRACTION < range_size, walking the postings again beats scanning the slice.
SPARSE_FRACTION = 8


def num_ranges(num_documents: int, range_size: int) -> int:
    return max(1, -(-int(num_documents) // int(range_size)))


def prepare_ranges(offsets: np.ndarray, doc_numbers: np.ndarray, num_documents: int,
                   range_size: int = DEFAULT_RANGE_SIZE) -> np.ndarray:
    """range_starts int64[vocab, ranges + 1]: row t holds the posting positions where term t's documents
    reach r * range_size, for r = 0..ranges (the last column is the end of the list). O(vocab * ranges * log)."""
    if not MIN_RANGE_SIZE <= range_size <= MAX_RANGE_SIZE:
        raise ValueError(f"range_size must be in [{MIN_RANGE_SIZE}, {MAX_RANGE_SIZE}], got {range_size}")
    return _range_starts(np.asarray(offsets, dtype=np.int64), doc_numbers, num_ranges(num_documents, range_size),
                         np.int64(range_size))


@njit(nogil=True, cache=True)
def _range_starts(offsets, doc_numbers, ranges, range_size):
    vocab = offsets.shape[0] - 1
    starts = np.empty((vocab, ranges + 1), dtype=np.int64)
    bounds = np.arange(ranges + 1).astype(np.int64) * range_size
    for term in range(vocab):
        lo, hi = offsets[term], offsets[term + 1]
        docs = doc_numbers[lo:hi]
        for r in range(ranges):
            starts[term, r] = lo + np.searchsorted(docs, bounds[r])
        starts[term, ranges] = hi
    return starts


@njit(nogil=True, cache=True)
def score_blocked(doc_numbers, impacts, range_starts, range_size, num_documents, term_ids, term_weights, scale,
                  k, accumulator, allowed=NO_MASK):
    """Top-k (document numbers int64, scores float32, postings traversed) of a query, equal to the oracle's.

    `accumulator` is float32[>= min(range_size, num_documents)], all zeros; it is left all zeros. Term ids
    outside the vocabulary are ignored; k is capped at the number of documents. `allowed`: bool[num_documents]
    of the documents that may be returned, or empty for all (selection skips the others; see exact.py).
    """
    masked = allowed.shape[0] > 0
    vocab_size = range_starts.shape[0]
    ranges = range_starts.shape[1] - 1
    scale32 = np.float32(scale)
    # The query's valid terms and their float32 weights, computed as the oracle does.
    num_terms = 0
    terms = np.empty(term_ids.shape[0], dtype=np.int64)
    weights = np.empty(term_ids.shape[0], dtype=np.float32)
    for q in range(term_ids.shape[0]):
        term = term_ids[q]
        if term < 0 or term >= vocab_size:
            continue
        terms[num_terms] = term
        weights[num_terms] = np.float32(term_weights[q]) * scale32
        num_terms += 1

    k = min(k, num_documents)
    k = max(k, 0)
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    size = 0
    threshold = np.float32(0)
    postings = 0
    for r in range(ranges):
        base = r * range_size
        width = min(range_size, num_documents - base)
        acc = accumulator[:width]
        touched = 0
        for q in range(num_terms):
            term = terms[q]
            lo, hi = range_starts[term, r], range_starts[term, r + 1]
            if lo == hi:
                continue
            weight = weights[q]
            # Slices indexed from 0: LLVM drops the negative-index checks.
            docs = doc_numbers[lo:hi]
            term_impacts = impacts[lo:hi]
            touched += hi - lo
            for i in range(docs.shape[0]):
                acc[np.int64(docs[i]) - base] += weight * np.float32(term_impacts[i])
        postings += touched
        if touched == 0:
            continue
        if k == 0:
            acc[:] = 0
            continue
        if touched * SPARSE_FRACTION < width:
            # Few documents touched: reach them through the postings; reading zeroes the entry, so a document
            # is offered once with its full score. _offer compares document numbers, so order does not matter.
            for q in range(num_terms):
                term = terms[q]
                docs = doc_numbers[range_starts[term, r]:range_starts[term, r + 1]]
                for i in range(docs.shape[0]):
                    local = np.int64(docs[i]) - base
                    score = acc[local]
                    if score > 0:
                        acc[local] = 0
                        if masked and not allowed[local + base]:
                            continue
                        size = offer(heap_scores, heap_docs, size, k, score, local + base)
            threshold = heap_scores[0] if size == k else np.float32(0)
        else:
            # Ascending document order and every kept hit has a lower number: '>' the k-th best is the test.
            for local in range(width):
                score = acc[local]
                if score > threshold and (not masked or allowed[local + base]):
                    if size < k:
                        heap_scores[size] = score
                        heap_docs[size] = local + base
                        sift_up(heap_scores, heap_docs, size)
                        size += 1
                        if size == k:
                            threshold = heap_scores[0]
                    else:
                        heap_scores[0] = score
                        heap_docs[0] = local + base
                        sift_down(heap_scores, heap_docs, size, 0)
                        threshold = heap_scores[0]
            acc[:] = 0
    docs, scores = sorted_hits(heap_scores, heap_docs, size)
    return docs, scores, postings
