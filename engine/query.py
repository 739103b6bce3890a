"""The sparse query type, pruned by the one rule (`models.sparse.heaviest_terms`).

Pruning keeps the `max_terms` largest weights; ties go to the lower term id, so the result does not depend on
the order the terms arrived in. Vector queries, document vectors and inference-free queries are pruned by it
(the ONNX encoders prune with TopK in the graph, weight descending). A query pruned to m terms is a prefix of
the same query pruned to M >= m terms, which lets one encoder batch serve requests with different pruning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.sparse import heaviest_terms


@dataclass(frozen=True, slots=True)
class SparseQuery:
    term_ids: np.ndarray   # int32, weight descending (ties: lower term id)
    weights: np.ndarray    # float32, > 0

    def __len__(self) -> int:
        return len(self.term_ids)

    def keep_heaviest(self, max_terms: int | None) -> SparseQuery:
        """The first `max_terms` terms (the query is already in pruning order)."""
        if max_terms is None or len(self.term_ids) <= max_terms:
            return self
        return SparseQuery(self.term_ids[:max_terms], self.weights[:max_terms])

    @classmethod
    def empty(cls) -> SparseQuery:
        return cls(np.zeros(0, np.int32), np.zeros(0, np.float32))


def prune_query(term_ids: np.ndarray, weights: np.ndarray, max_terms: int | None) -> SparseQuery:
    return SparseQuery(*heaviest_terms(term_ids, weights, max_terms))
