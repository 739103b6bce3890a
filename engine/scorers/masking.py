"""The allowed-document mask of the scorer seam: checking it, and choosing how a scorer honours it.

A mask (`allowed`: numpy bool[num_documents], True = may be returned) comes from a filter, from deleted
documents, or both. Every scorer honours it during the search, never as a post-filter, so a search returns k
hits whenever k allowed documents score above 0. Two ways, chosen per query by estimated cost:
- traversal: the scorer's own kernel walks its postings and skips excluded documents when selecting;
- selection: when few documents are allowed, each is looked up in each query term's list
  (engine/kernels/selected.py), cheaper than walking postings that are mostly excluded.
"""
from __future__ import annotations

import numpy as np

from engine.index_format import InvertedIndex
from engine.kernels.exact import NO_MASK
from engine.kernels.selected import score_selected
from engine.query import SparseQuery

# One binary-search probe of a posting list costs about this many sequential accumulator adds (measured order
# of magnitude: a probe is ~log2(list length) dependent loads against one streamed add).
PROBE_COST = 24


def checked(allowed: np.ndarray | None, num_documents: int) -> np.ndarray | None:
    """`allowed` as a contiguous bool array of the index's length (None stays None); ValueError otherwise: a
    wrong mask is a programming error of the caller, not bad user input."""
    if allowed is None:
        return None
    allowed = np.asarray(allowed)
    if allowed.dtype != np.bool_ or allowed.shape != (num_documents,):
        raise ValueError(f"allowed must be a bool array of shape ({num_documents},), "
                         f"got {allowed.dtype} {allowed.shape}")
    return np.ascontiguousarray(allowed)


def kernel_mask(allowed: np.ndarray | None) -> np.ndarray:
    """What the kernels take: the mask, or the empty 'no mask' array."""
    return NO_MASK if allowed is None else allowed


def query_postings(offsets: np.ndarray, query: SparseQuery) -> int:
    """How many postings a full traversal of `query` walks."""
    terms = query.term_ids.astype(np.int64)
    return int((offsets[terms + 1] - offsets[terms]).sum()) if len(terms) else 0


def selected_documents(offsets: np.ndarray, query: SparseQuery, allowed: np.ndarray | None) -> np.ndarray | None:
    """The allowed document numbers (int64, ascending) when looking them up is cheaper than a traversal of
    `offsets`' postings; None when the traversal is cheaper (or there is no mask)."""
    if allowed is None:
        return None
    count = int(np.count_nonzero(allowed))
    if count * max(len(query), 1) * PROBE_COST >= query_postings(offsets, query) and count > 0:
        return None
    return np.flatnonzero(allowed).astype(np.int64)


def score_documents(index: InvertedIndex, query: SparseQuery, k: int, documents: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The exact top-k among `documents` (bit for bit the exact scorer's scores), with counters."""
    docs, scores, probes = score_selected(index.offsets, index.doc_numbers, index.impacts, query.term_ids,
                                          query.weights, np.float32(index.scale), int(k), documents)
    return docs, scores, {"postings_traversed": 0, "postings_probed": int(probes),
                          "documents_allowed": int(len(documents))}
