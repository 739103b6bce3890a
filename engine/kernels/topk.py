"""Top-k heap helpers shared by the kernels (Numba): the k best hits, score descending, ties to the lower
document number, the same rule as the exact oracle. The heap's root is the worst hit kept, so the usual test
per candidate is one comparison against it.

A copy of the helpers of the exact scorer on purpose: the kernels must not depend on where the service's
scorer module lives.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, inline="always")
def worse(score_a, doc_a, score_b, doc_b):
    """True when hit a ranks below hit b: lower score, or the same score and a higher document number."""
    return score_a < score_b or (score_a == score_b and doc_a > doc_b)


@njit(nogil=True, cache=True)
def sift_down(heap_scores, heap_docs, size, i):
    while True:
        child = 2 * i + 1
        if child >= size:
            return
        right = child + 1
        if right < size and worse(heap_scores[right], heap_docs[right], heap_scores[child], heap_docs[child]):
            child = right
        if worse(heap_scores[child], heap_docs[child], heap_scores[i], heap_docs[i]):
            heap_scores[i], heap_scores[child] = heap_scores[child], heap_scores[i]
            heap_docs[i], heap_docs[child] = heap_docs[child], heap_docs[i]
            i = child
        else:
            return


@njit(nogil=True, cache=True)
def sift_up(heap_scores, heap_docs, i):
    while i > 0:
        parent = (i - 1) // 2
        if worse(heap_scores[i], heap_docs[i], heap_scores[parent], heap_docs[parent]):
            heap_scores[i], heap_scores[parent] = heap_scores[parent], heap_scores[i]
            heap_docs[i], heap_docs[parent] = heap_docs[parent], heap_docs[i]
            i = parent
        else:
            return


@njit(nogil=True, cache=True)
def offer(heap_scores, heap_docs, size, k, score, doc):
    """Offer a hit to the heap of the k best (root = worst kept); returns the new size."""
    if size < k:
        heap_scores[size] = score
        heap_docs[size] = doc
        sift_up(heap_scores, heap_docs, size)
        return size + 1
    if worse(heap_scores[0], heap_docs[0], score, doc):
        heap_scores[0] = score
        heap_docs[0] = doc
        sift_down(heap_scores, heap_docs, size, 0)
    return size


@njit(nogil=True, cache=True)
def sorted_hits(heap_scores, heap_docs, size):
    """The heap's hits, best first (score descending, then document number ascending); empties the heap."""
    docs = np.empty(size, dtype=np.int64)
    scores = np.empty(size, dtype=np.float32)
    while size > 0:
        size -= 1
        docs[size] = heap_docs[0]
        scores[size] = heap_scores[0]
        heap_scores[0] = heap_scores[size]
        heap_docs[0] = heap_docs[size]
        sift_down(heap_scores, heap_docs, size, 0)
    return docs, scores
