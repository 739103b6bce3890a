"""Top-k selection for the Numba scorers: a heap of the k best hits whose root is the current k-th best.

Rank order: score descending, ties to the lower document number (the engine's one tie rule).
"""
from __future__ import annotations

from collections.abc import Sequence

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


@njit(nogil=True, cache=True, inline="always")
def could_enter(heap_scores, size, k, score):
    """False when `offer` would surely leave the heap as it is: it is full and `score` is below its root.

    Kernels test this before they call `offer` in hot loops: a Numba call passing arrays pays a reference count
    increment and decrement on each (~23 ns a hit). The test lives at the call sites because moving it into an
    inlined `offer` (calling the heap update only past it) kept most of that cost: a one-term query of 62k
    postings took 1.2 ms that way, 0.10 ms with the test at the call site."""
    return size < k or score >= heap_scores[0]


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
    """The heap's hits, best first (score descending, then document number ascending)."""
    docs = np.empty(size, dtype=np.int64)
    scores = np.empty(size, dtype=np.float32)
    # Pop the worst repeatedly and fill from the back.
    while size > 0:
        size -= 1
        docs[size] = heap_docs[0]
        scores[size] = heap_scores[0]
        heap_scores[0] = heap_scores[size]
        heap_docs[0] = heap_docs[size]
        sift_down(heap_scores, heap_docs, size, 0)
    return docs, scores


def merge_sorted_top_k(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hit lists of disjoint document sets, each best first (document numbers, float32 scores), e.g. the shares
    of one query's ranges -> the best k of them all by the tie rule: a k-step merge of their heads (a lexsort of
    the concatenation measured ~0.4 ms at k=1000 and two lists)."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    starts = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(d) for d, _ in parts], out=starts[1:])
    docs = np.concatenate([d for d, _ in parts]).astype(np.int64, copy=False)
    scores = np.concatenate([s for _, s in parts]).astype(np.float32, copy=False)
    return _merge_heads(docs, scores, starts, np.int64(k))


@njit(nogil=True, cache=True)
def _merge_heads(docs, scores, starts, k):
    lists = starts.shape[0] - 1
    heads = starts[:-1].copy()
    size = min(k, starts[lists])
    out_docs = np.empty(size, dtype=np.int64)
    out_scores = np.empty(size, dtype=np.float32)
    for j in range(size):
        best = -1
        for i in range(lists):
            h = heads[i]
            if h < starts[i + 1] and (best < 0 or worse(scores[heads[best]], docs[heads[best]], scores[h], docs[h])):
                best = i
        out_docs[j] = docs[heads[best]]
        out_scores[j] = scores[heads[best]]
        heads[best] += 1
    return out_docs, out_scores
