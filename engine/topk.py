"""Top-k selection for the Numba scorers, in two forms:

- a heap of the k best hits whose root is the current k-th best (`offer`), for kernels that admit few hits;
- a buffer of hit keys (`hit_key`, `push_key`, `best_hits`): a hit that beats the bar is appended; when the buffer
  is full it keeps its k best (a partition, O(buffer)) and the k-th best becomes the bar. Where thousands of hits
  enter (k or candidates in the thousands), appends cost less than heap sifts: the walk that keeps 2,000
  candidates took 2.64 ms with the heap, 2.12 ms with the buffer (docs/index.md, "Eighth round").

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


# Hit keys: a positive float32 score's bits order as the scores do, so (score bits << 32) | (2^32 - 1 - document)
# orders hits by the tie rule as plain integers (larger = better) for document numbers below 2^32.
_LOW_WORD = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


@njit(nogil=True, cache=True)
def key_buffer(k):
    """A key buffer for the k best hits: uint64[2k + 1024] (the spare room sets how often it is compacted)."""
    return np.empty(2 * max(0, k) + 1024, dtype=np.uint64)


@njit(nogil=True, cache=True, inline="always")
def hit_key(score, doc):
    """The key of a hit with a positive score (for a score <= 0 the order is not kept)."""
    return (np.uint64(np.float32(score).view(np.uint32)) << _SHIFT) | (_LOW_WORD - np.uint64(doc))


@njit(nogil=True, cache=True, inline="always")
def key_score(key):
    return np.uint32(key >> _SHIFT).view(np.float32)


@njit(nogil=True, cache=True)
def keep_best(keys, size, k):
    """Keep the k best of keys[:size] in keys[:k] (any order); returns the k-th best key. Needs 0 < k <= size."""
    part = np.partition(keys[:size], size - k)
    keys[:k] = part[size - k:]
    return part[size - k]


@njit(nogil=True, cache=True, inline="always")
def push_key(keys, size, k, key, bar_key):
    """Append a key that beats `bar_key`; compact when the buffer is full. Returns (size, bar_key).

    Call sites test `score >= key_score(bar_key)` (a float compare) before they build the key, as with
    `could_enter`. The blocked kernel writes these lines out instead of calling: the call (array arguments, even
    inlined) cost ~10% of a walk that keeps 2,000 candidates (1.65 vs 1.51 ms)."""
    keys[size] = key
    size += 1
    if size == keys.shape[0]:
        bar_key = keep_best(keys, size, k)
        size = k
    return size, bar_key


@njit(nogil=True, cache=True)
def best_hits(keys, size, k):
    """The k best hits of keys[:size], best first: (document numbers int64, scores float32)."""
    if size > k > 0:
        keep_best(keys, size, k)
    size = min(size, k)
    top = np.sort(keys[:size])
    docs = np.empty(size, dtype=np.int64)
    scores = np.empty(size, dtype=np.float32)
    for i in range(size):
        key = top[size - 1 - i]
        docs[i] = np.int64(_LOW_WORD - (key & _LOW_WORD))
        scores[i] = key_score(key)
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
