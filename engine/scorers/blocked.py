"""`exact-blocked`: the exact top-k, bit for bit, with the accumulator cut into L2-sized document ranges
(engine/kernels/blocked_exact.py). Needs no index part: the range table is derived when the scorer is bound."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.index_format import InvertedIndex
from engine.kernels.blocked_exact import DEFAULT_RANGE_SIZE, prepare_ranges, score_blocked
from engine.query import SparseQuery
from engine.scorers import masking
from engine.scorers.base import Scorer, TopK


class BlockedExactScorer(Scorer):
    name = "exact-blocked"
    safe = True
    description = ("Exact, term-at-a-time per document range of 32K documents, so the accumulator stays in L2; "
                   "equal to `exact` bit for bit.")

    def __init__(self, index: InvertedIndex, range_size: int = DEFAULT_RANGE_SIZE) -> None:
        super().__init__(index)
        self.range_size = int(min(range_size, max(index.num_documents, 1024)))
        self.range_starts = prepare_ranges(index.offsets, index.doc_numbers, index.num_documents, self.range_size)

    def new_scratch(self) -> np.ndarray:
        return np.zeros(self.range_size, dtype=np.float32)  # all zeros between searches

    def search(self, query: SparseQuery, k: int, scratch: np.ndarray, options: Mapping[str, Any],
               allowed: np.ndarray | None = None) -> TopK:
        index = self.index
        allowed = masking.checked(allowed, index.num_documents)
        selected = masking.selected_documents(index.offsets, query, allowed)
        if selected is not None:
            return TopK(*masking.score_documents(index, query, k, selected))
        docs, scores, postings = score_blocked(index.doc_numbers, index.impacts, self.range_starts,
                                               np.int64(self.range_size), np.int64(index.num_documents),
                                               query.term_ids, query.weights, np.float32(index.scale), int(k),
                                               scratch, masking.kernel_mask(allowed))
        return TopK(docs, scores, {"postings_traversed": int(postings)})
