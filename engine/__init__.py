"""The engine: "an index and how to search it".

It owns the on-disk format and its typed manifest (`index_format`, `manifest`), the sparse query type and its
one pruning rule (`query`), top-k (`topk`), every scorer behind one seam (`scorers`; the exact scorer is the
oracle), the served-index snapshot rule (`snapshot`) and the one query path (`searcher`). It imports `models`
and `storage` at most, never FastAPI or torch; `index_builder` and `service` build on it.
"""
from engine.errors import (DeadlineExceededError, EngineError, IncompatibleArtifactsError, IndexFormatError,
                           InvalidQueryError, OverloadedError, UnknownTokenError)
from engine.index_format import InvertedIndex, open_index
from engine.query import SparseQuery, heaviest_terms, prune_query
from engine.searcher import (STAGES, EncodedTexts, Hit, ScoredQuery, SearchOptions, SearchResult, Searcher,
                             StageTimes)
from engine.snapshot import ServedIndex, Snapshot

__all__ = [
    "DeadlineExceededError", "EncodedTexts", "EngineError", "Hit", "IncompatibleArtifactsError", "IndexFormatError",
    "InvalidQueryError", "InvertedIndex", "OverloadedError", "STAGES", "ScoredQuery", "SearchOptions",
    "SearchResult", "Searcher", "ServedIndex", "Snapshot", "SparseQuery", "StageTimes", "UnknownTokenError",
    "heaviest_terms", "open_index", "prune_query",
]
