"""The exact scorer: term-at-a-time into a dense accumulator (engine.kernels.exact). The oracle of the engine."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.kernels.exact import score_exact
from engine.query import SparseQuery
from engine.scorers import masking
from engine.scorers.base import Scorer, TopK


class ExactScorer(Scorer):
    name = "exact"
    safe = True
    description = "Exhaustive term-at-a-time over every posting of every query term; needs no optional part."

    def new_scratch(self) -> np.ndarray:
        return np.zeros(self.index.num_documents, dtype=np.float32)  # all zeros between searches

    def search(self, query: SparseQuery, k: int, scratch: np.ndarray, options: Mapping[str, Any],
               allowed: np.ndarray | None = None) -> TopK:
        index = self.index
        allowed = masking.checked(allowed, index.num_documents)
        selected = masking.selected_documents(index.offsets, query, allowed)
        if selected is not None:
            return TopK(*masking.score_documents(index, query, k, selected))
        docs, scores, postings = score_exact(index.offsets, index.doc_numbers, index.impacts, query.term_ids,
                                             query.weights, np.float32(index.scale), int(k), scratch,
                                             masking.kernel_mask(allowed))
        return TopK(docs, scores, {"postings_traversed": int(postings)})
