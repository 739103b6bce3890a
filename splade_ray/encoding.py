"""The encoder half of engine.Searcher, for a deployment that holds the query encoder but no index.

The methods are engine.Searcher's own functions (not copies): text encoding with length-grouped calls,
vector queries with the same validation and errors, the one query-term limit. A query encoded here is
therefore the query the single-process service scores.
"""
from __future__ import annotations

from typing import Any

from engine.searcher import Searcher


class QueryEncoding:
    """`encode_texts`, `vector_query`, `resolve_max_terms`, `query_terms` of engine.Searcher, without an index."""

    # Searcher's methods read only `self.encoder` and `self.max_query_terms`.
    encode_texts = Searcher.encode_texts
    vector_query = Searcher.vector_query
    resolve_max_terms = Searcher.resolve_max_terms
    query_terms = Searcher.query_terms

    def __init__(self, encoder: Any, max_query_terms: int | None) -> None:
        if max_query_terms is not None and max_query_terms < 1:
            raise ValueError(f"max_query_terms must be >= 1 or None, got {max_query_terms}")
        self.encoder = encoder
        self.max_query_terms = max_query_terms
