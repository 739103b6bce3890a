"""The global top-k over document-range shards, with the engine's one tie rule.

The engine ranks by score descending, ties to the lower document number (engine/topk.py). A shard holds the
documents [first_document, first_document + n) renumbered from 0 and scores them exactly as the whole index
would (same impacts, same scale, same summation order), so ranking the union of the shards' top-k by
(score descending, first_document + local number ascending) gives the whole index's top-k, ties included:
any document of the global top-k is in its own shard's top-k.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class ShardTop:
    """One shard's answer: local document numbers and float32 scores, best first, and scorer statistics."""

    shard: int
    first_document: int
    doc_numbers: np.ndarray          # int64, local to the shard
    scores: np.ndarray               # float32
    stats: dict = field(default_factory=dict)
    score_s: float = 0.0             # time spent in the shard's scorer


@dataclass(frozen=True, slots=True)
class MergedHit:
    shard: int
    local_doc: int
    global_doc: int
    score: float


def merge_top_k(tops: list[ShardTop], k: int) -> list[MergedHit]:
    """The k best hits over all shards: score descending, then global document number ascending."""
    if not tops:
        return []
    scores = np.concatenate([np.asarray(t.scores, np.float32) for t in tops])
    local = np.concatenate([np.asarray(t.doc_numbers, np.int64) for t in tops])
    shard = np.concatenate([np.full(len(t.scores), t.shard, np.int64) for t in tops])
    global_doc = local + np.concatenate([np.full(len(t.scores), t.first_document, np.int64) for t in tops])
    # lexsort: the last key is the primary one; scores negated in float64 keep float32 order exactly.
    order = np.lexsort((global_doc, -scores.astype(np.float64)))[:k]
    return [MergedHit(int(shard[i]), int(local[i]), int(global_doc[i]), float(scores[i])) for i in order]


def merged_stats(tops: list[ShardTop]) -> dict[str, int]:
    """Scorer statistics summed over the shards (postings_traversed is the whole query's work)."""
    total: dict[str, int] = {}
    for top in tops:
        for key, value in top.stats.items():
            total[key] = total.get(key, 0) + int(value)
    return total
