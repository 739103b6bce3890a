"""The sparse vector every encoder returns, and the one rule that prunes a vector to its heaviest terms.

Defined here, at the lowest layer that needs it (the weight-table encoder prunes with it); `engine.query`
builds its query type on it, and the index builder prunes documents with it.
"""
from __future__ import annotations

import numpy as np

SparseVector = tuple[np.ndarray, np.ndarray]  # (int32 term ids, float32 weights), weight descending, all > 0


def heaviest_terms(term_ids: np.ndarray, weights: np.ndarray, max_terms: int | None) -> SparseVector:
    """Weight descending, ties to the lower term id (so arrival order never matters), cut to `max_terms`."""
    term_ids = np.asarray(term_ids)
    weights = np.asarray(weights)
    order = np.lexsort((term_ids, -weights))
    if max_terms is not None:
        order = order[:max_terms]
    return term_ids[order].astype(np.int32), weights[order].astype(np.float32)
