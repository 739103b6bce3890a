"""Query-time pruning beyond a fixed top-k (request options `query_weight_mass`, `query_weight_ratio`).

A query is weight-descending, so each rule keeps a prefix (and a pruned query stays a prefix of the full one):

- weight mass: keep the fewest heaviest terms whose weights sum to at least `mass` x the query's total
  (mass 1 keeps every term);
- weight ratio: drop the terms lighter than `ratio` x the heaviest term's weight (ratio 0 keeps every term).

Both given: the shorter prefix. The server bounds how far a request may prune (SPLADE_MIN_QUERY_WEIGHT_MASS,
SPLADE_MAX_QUERY_WEIGHT_RATIO); quality and latency costs on SciFact are in docs/hybrid.md.
"""
from __future__ import annotations

import math

import numpy as np

from engine.errors import InvalidQueryError
from engine.query import SparseQuery


def mass_prefix(weights: np.ndarray, mass: float) -> int:
    if len(weights) == 0:
        return 0
    cumulative = np.cumsum(weights, dtype=np.float64)
    # The float tolerance keeps mass=1 from dropping a term to rounding.
    return int(min(len(weights), np.searchsorted(cumulative, mass * cumulative[-1] * (1 - 1e-12)) + 1))


def ratio_prefix(weights: np.ndarray, ratio: float) -> int:
    if len(weights) == 0:
        return 0
    return int(np.count_nonzero(weights >= ratio * float(weights[0])))


def check(mass: float | None, ratio: float | None, min_mass: float = 0.0, max_ratio: float = 1.0,
          two_phase_ratio: float | None = None, max_two_phase_ratio: float = 1.0) -> None:
    """InvalidQueryError naming the field and the server limit for a value out of range."""
    if two_phase_ratio is not None and not (isinstance(two_phase_ratio, (int, float)) and math.isfinite(
            two_phase_ratio) and 0 <= two_phase_ratio <= max_two_phase_ratio):
        raise InvalidQueryError("two_phase_ratio", f"must be in [0, {max_two_phase_ratio}], got {two_phase_ratio!r}",
                                [0, max_two_phase_ratio])
    if mass is not None and not (isinstance(mass, (int, float)) and math.isfinite(mass) and min_mass <= mass <= 1
                                 and mass > 0):
        raise InvalidQueryError("query_weight_mass", f"must be in [{min_mass}, 1] and > 0, got {mass!r}",
                                [min_mass, 1])
    if ratio is not None and not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and 0 <= ratio <= max_ratio):
        raise InvalidQueryError("query_weight_ratio", f"must be in [0, {max_ratio}], got {ratio!r}", [0, max_ratio])


def prune(query: SparseQuery, mass: float | None = None, ratio: float | None = None) -> SparseQuery:
    """The prefix both rules keep (the query itself when neither is given)."""
    if mass is None and ratio is None:
        return query
    keep = len(query)
    if mass is not None:
        keep = min(keep, mass_prefix(query.weights, mass))
    if ratio is not None:
        keep = min(keep, ratio_prefix(query.weights, ratio))
    return query.keep_heaviest(keep)
