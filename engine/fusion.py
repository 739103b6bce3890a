"""Fusion of ranked lists from several retrievers (pure functions; engine.hybrid runs the retrievers).

Each retriever's list is (document numbers, scores), best first, as a scorer returns it. Two methods:

- Reciprocal rank fusion: fused(d) = sum_r weight_r / (rank_constant + rank_r(d)), rank from 1; a document a
  retriever did not return adds nothing from it. Scores are ignored, so nothing needs normalizing.
- Linear: fused(d) = sum_r weight_r * normalize_r(score_r(d)); `minmax` maps a list's scores to [0, 1],
  `zscore` to (s - mean) / std over the list. A document a retriever did not return gets that retriever's
  lowest normalized value in the list (it scored at most that; 0 for min-max).

Ties in the fused score go to the lower document number, as every scorer's do.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.errors import InvalidQueryError

METHODS = ("rrf", "linear")
NORMALIZATIONS = ("minmax", "zscore")
RETRIEVERS = ("splade", "bm25")
DEFAULT_RANK_CONSTANT = 60.0
MAX_RANK_CONSTANT = 1e6


@dataclass(frozen=True)
class FusionSpec:
    """How a hybrid request fuses its retrievers (the server's defaults come from its settings)."""

    # The defaults chosen on SciFact's train queries (docs/hybrid.md); the service's settings repeat them.
    method: str = "linear"
    weights: Mapping[str, float] = field(default_factory=lambda: {"splade": 1.0, "bm25": 2.0})
    normalization: str = "zscore"
    rank_constant: float = DEFAULT_RANK_CONSTANT

    def checked(self) -> FusionSpec:
        """Itself, or InvalidQueryError naming the field (`fusion`, `fusion_weights.<r>`, ...) and the limit."""
        if self.method not in METHODS:
            raise InvalidQueryError("fusion", f"unknown fusion {self.method!r}", list(METHODS))
        if self.normalization not in NORMALIZATIONS:
            raise InvalidQueryError("normalization", f"unknown normalization {self.normalization!r}",
                                    list(NORMALIZATIONS))
        constant = self.rank_constant
        if isinstance(constant, bool) or not isinstance(constant, (int, float)) or not (
                math.isfinite(constant) and 0 <= constant <= MAX_RANK_CONSTANT):
            raise InvalidQueryError("rank_constant", f"must be finite and in [0, {MAX_RANK_CONSTANT:g}], got "
                                                     f"{constant!r}", [0, MAX_RANK_CONSTANT])
        for name, weight in self.weights.items():
            if name not in RETRIEVERS:
                raise InvalidQueryError(f"fusion_weights.{name}", f"unknown retriever {name!r}", list(RETRIEVERS))
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or weight < 0:
                raise InvalidQueryError(f"fusion_weights.{name}", f"must be finite and >= 0, got {weight!r}", 0)
        if not any(self.weight(r) > 0 for r in RETRIEVERS):
            raise InvalidQueryError("fusion_weights", "at least one weight must be > 0", 0)
        return self

    def weight(self, retriever: str) -> float:
        return float(self.weights.get(retriever, 1.0))

    def with_overrides(self, method: str | None = None, weights: Mapping[str, float] | None = None,
                       normalization: str | None = None, rank_constant: float | None = None) -> FusionSpec:
        merged = dict(self.weights)
        merged.update(weights or {})
        return FusionSpec(method or self.method, merged, normalization or self.normalization,
                          self.rank_constant if rank_constant is None else rank_constant)


@dataclass(frozen=True)
class Ranked:
    """One retriever's list: document numbers (int64) and scores, best first."""

    doc_numbers: np.ndarray
    scores: np.ndarray


def normalize(scores: np.ndarray, method: str) -> np.ndarray:
    """Scores mapped by `minmax` (to [0, 1]; all equal -> all 1) or `zscore` (all equal -> all 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) == 0:
        return scores
    if method == "minmax":
        low, high = float(scores.min()), float(scores.max())
        return np.ones_like(scores) if high == low else (scores - low) / (high - low)
    if method == "zscore":
        std = float(scores.std())
        return np.zeros_like(scores) if std == 0 else (scores - float(scores.mean())) / std
    raise ValueError(f"unknown normalization {method!r}")


def fuse(lists: Mapping[str, Ranked], spec: FusionSpec, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k (document numbers int64, fused scores float64) of the retrievers' lists (numpy, no Python loop
    per document: a hybrid query at k=1000 fuses two 2000-document lists)."""
    nonempty = {name: r for name, r in lists.items() if len(r.doc_numbers)}
    if not nonempty:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    all_docs, parts = [], []
    for name, ranked in nonempty.items():
        weight = spec.weight(name)
        if spec.method == "rrf":
            values = weight / (spec.rank_constant + np.arange(1, len(ranked.doc_numbers) + 1, dtype=np.float64))
        else:
            values = weight * normalize(ranked.scores, spec.normalization)
        all_docs.append(np.asarray(ranked.doc_numbers, dtype=np.int64))
        parts.append(values)
    docs, inverse = np.unique(np.concatenate(all_docs), return_inverse=True)
    scores = np.bincount(inverse, weights=np.concatenate(parts), minlength=len(docs))
    if spec.method == "linear":
        # A document missing from a list gets that list's lowest normalized value (see the module doc).
        for (name, ranked), values in zip(nonempty.items(), parts):
            missing = ~np.isin(docs, ranked.doc_numbers, assume_unique=True)
            scores[missing] += float(values.min())
    order = np.lexsort((docs, -scores))[:k]
    return docs[order], scores[order]


def ranks_of(ranked: Ranked) -> dict[int, tuple[int, float]]:
    """document number -> (rank from 1, score) in one retriever's list (for `explain`)."""
    return {doc: (rank, float(score)) for rank, (doc, score) in
            enumerate(zip(ranked.doc_numbers.tolist(), ranked.scores.tolist()), 1)}


def retriever_depth(k: int, num_documents: int, minimum: int = 100, factor: int = 2) -> int:
    """How many documents each retriever fetches for a hybrid top-k: max(factor * k, minimum), at most all."""
    return max(1, min(num_documents, max(factor * k, minimum)))


def parse_weights(text: str) -> dict[str, float]:
    """`splade=1,bm25=0.5` -> {"splade": 1.0, "bm25": 0.5} (for command-line flags); ValueError if malformed."""
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected retriever=weight, got {item!r}")
        weights[name.strip()] = float(value)
    return weights


__all__: Sequence[str] = ("FusionSpec", "Ranked", "fuse", "normalize", "ranks_of", "retriever_depth",
                          "parse_weights", "METHODS", "NORMALIZATIONS", "RETRIEVERS")
