"""Exact term-at-a-time scoring of a sparse query over the inverted index, in Numba (no I/O, no web imports).

score(d) = sum over query terms t of float32(query_weight_t * scale) * float32(impact_{t,d}), summed in float32
in query-term order. The result is the k best (score descending, ties to the lower document number).

Design, measured in docs/index.md:
- A dense float32 accumulator per calling thread (the caller owns it; it is all zeros on entry and on exit).
- Top-k keeps a heap whose root is the current k-th best, so the common case per document is one comparison
  against a threshold; documents are scanned in ascending order, so an equal score never displaces a hit.
- When the query touches few documents (postings < documents / SPARSE_FRACTION) the accumulator is neither
  scanned nor cleared in full: the postings are walked again, reading and zeroing only the touched entries.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from engine.topk import could_enter, offer, sift_down, sift_up, sorted_hits

# Below postings * SPARSE_FRACTION < documents, walking the postings again beats a full scan of the accumulator.
SPARSE_FRACTION = 8
# "No mask": an empty bool array, so that the kernel has one signature with and without a mask.
NO_MASK = np.zeros(0, dtype=np.bool_)


@njit(nogil=True, cache=True)
def score_exact(offsets, doc_numbers, impacts, term_ids, term_weights, scale, k, accumulator, allowed=NO_MASK):
    """Top-k (document numbers int64, scores float32, postings traversed) of a query; see the module doc.

    `accumulator` is float32[num_documents], all zeros; it is left all zeros. Term ids outside the vocabulary
    are ignored (the Searcher rejects them earlier); k is capped at the number of documents. `allowed` is a
    bool[num_documents] mask of the documents that may be returned, or empty (NO_MASK) for all of them: the
    postings are still summed, only the selection skips what the mask excludes (so k hits come back whenever
    k allowed documents score above 0).
    """
    masked = allowed.shape[0] > 0
    num_docs = accumulator.shape[0]
    vocab_size = offsets.shape[0] - 1
    scale32 = np.float32(scale)
    postings = 0
    for q in range(term_ids.shape[0]):
        term = term_ids[q]
        if term < 0 or term >= vocab_size:
            continue
        weight = np.float32(term_weights[q]) * scale32
        # Slices indexed from 0 let LLVM drop the negative-index checks: ~30% faster than offsets-based indexing.
        docs = doc_numbers[offsets[term]:offsets[term + 1]]
        term_impacts = impacts[offsets[term]:offsets[term + 1]]
        postings += docs.shape[0]
        for i in range(docs.shape[0]):
            accumulator[docs[i]] += weight * np.float32(term_impacts[i])

    k = min(k, num_docs)
    heap_scores = np.empty(max(k, 0), dtype=np.float32)
    heap_docs = np.empty(max(k, 0), dtype=np.int64)
    size = 0
    if k <= 0:
        # Nothing to return, but the accumulator must still be cleared.
        accumulator[:] = 0
        docs, scores = sorted_hits(heap_scores, heap_docs, 0)
        return docs, scores, postings
    if postings * SPARSE_FRACTION < num_docs:
        # Few documents touched: visit them through the postings; reading zeroes each entry, so a document
        # that several terms touched is offered once, with its full score.
        for q in range(term_ids.shape[0]):
            term = term_ids[q]
            if term < 0 or term >= vocab_size:
                continue
            docs = doc_numbers[offsets[term]:offsets[term + 1]]
            for i in range(docs.shape[0]):
                doc = docs[i]
                score = accumulator[doc]
                if score > 0:
                    accumulator[doc] = 0
                    if masked and not allowed[doc]:
                        continue
                    if could_enter(heap_scores, size, k, score):
                        size = offer(heap_scores, heap_docs, size, k, score, np.int64(doc))
    else:
        # Full scan in document order: a later document never beats an equal score, so '>' against the
        # current k-th best (0 until the heap is full: untouched documents score 0) is the whole test.
        threshold = np.float32(0)
        for doc in range(num_docs):
            score = accumulator[doc]
            if score > threshold and (not masked or allowed[doc]):
                if size < k:
                    heap_scores[size] = score
                    heap_docs[size] = doc
                    sift_up(heap_scores, heap_docs, size)
                    size += 1
                    if size == k:
                        threshold = heap_scores[0]
                else:
                    heap_scores[0] = score
                    heap_docs[0] = doc
                    sift_down(heap_scores, heap_docs, size, 0)
                    threshold = heap_scores[0]
        accumulator[:] = 0
    docs, scores = sorted_hits(heap_scores, heap_docs, size)
    return docs, scores, postings
