"""Typed results of the HTTP API (the contract in docs/service.md).

They mirror the server's response models without importing the server (which pulls in numpy and the
encoder). `extra="allow"`: a field a newer server adds is kept (readable as an attribute and dumped back)
instead of failing the parse, so an older client keeps working against a newer server.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Timings(_Result):
    """Stage timings in milliseconds, as the server measured them."""

    tokenize: float
    queue: float
    encode: float
    score: float
    total: float


class Hit(_Result):
    id: str
    score: float
    # With include_text=True:
    title: str | None = None
    text: str | None = None
    # With explain=True: {token: part of the score}.
    contributions: dict[str, float] | None = None
    # On an index built with passages: {"index", "start", "end"} of the passage that matched (character offsets
    # into (title + " " + text).strip()).
    passage: dict[str, int] | None = None


class SearchResult(_Result):
    hits: list[Hit]
    # With explain=True: (token, weight) pairs, weight-descending.
    query_terms: list[tuple[str, float]] | None = None
    postings_traversed: int
    timings_ms: Timings


class BatchSearchResult(_Result):
    results: list[SearchResult]
    timings_ms: Timings


class Health(_Result):
    status: str


class Info(_Result):
    """`GET /info`: the model and index manifests, the execution provider in use and every setting."""

    model: dict
    index: dict
    provider: str
    settings: dict
    # The filterable metadata: {"schema": {field: type}, "limits", "operators"} (empty from older servers).
    metadata: dict = {}


class ErrorDetail(_Result):
    field: str
    message: str
    limit: int | float | str | None = None
