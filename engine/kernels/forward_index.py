"""A forward (document-major) copy of the inverted index, built by transposing it: for document d, its terms
(ascending, uint16: the vocabulary has at most 65,536 terms) and impacts (the index's dtype, uint8 or uint16) are
terms[doc_offsets[d]:doc_offsets[d + 1]], impacts[...]. The approximate scorer rescores its candidates from it.
The same impacts as the inverted index, so a rescored document gets the oracle's score exactly.
"""
from __future__ import annotations

import numpy as np
from numba import njit

MAX_VOCAB = 1 << 16


def build_forward(offsets: np.ndarray, doc_numbers: np.ndarray, impacts: np.ndarray,
                  num_documents: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(doc_offsets int64[N+1], terms uint16[P], impacts [P] in the index's dtype); memory: the output plus 8 bytes
    a document."""
    vocab = len(offsets) - 1
    if vocab > MAX_VOCAB:
        raise ValueError(f"the forward index stores term ids as uint16: vocabulary {vocab} > {MAX_VOCAB}")
    if np.dtype(impacts.dtype) not in (np.uint8, np.uint16):
        raise ValueError(f"the forward index stores uint8 or uint16 impacts, the index has {impacts.dtype}")
    counts = np.zeros(num_documents, dtype=np.int64)
    _count_documents(doc_numbers, counts)
    doc_offsets = np.zeros(num_documents + 1, dtype=np.int64)
    np.cumsum(counts, out=doc_offsets[1:])
    terms = np.empty(len(doc_numbers), dtype=np.uint16)
    forward_impacts = np.empty(len(doc_numbers), dtype=impacts.dtype)
    _transpose(np.asarray(offsets, dtype=np.int64), doc_numbers, impacts, doc_offsets, terms, forward_impacts)
    return doc_offsets, terms, forward_impacts


@njit(nogil=True, cache=True)
def _count_documents(doc_numbers, counts):
    for i in range(doc_numbers.shape[0]):
        counts[doc_numbers[i]] += 1


@njit(nogil=True, cache=True)
def _transpose(offsets, doc_numbers, impacts, doc_offsets, terms, forward_impacts):
    cursor = doc_offsets[:-1].copy()
    for term in range(offsets.shape[0] - 1):
        for i in range(offsets[term], offsets[term + 1]):
            doc = doc_numbers[i]
            position = cursor[doc]
            terms[position] = term
            forward_impacts[position] = impacts[i]
            cursor[doc] = position + 1
