"""Request bodies: only what the caller gave is sent, so the server's defaults and limits apply (one source of
truth: the client checks nothing the server checks, and a server-side 4xx names the field and the limit)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# What a query in a batch may be: a text, or the keyword arguments of `search` as a mapping.
BatchQuery = str | Mapping[str, Any]


def search_body(
    query: str | None = None,
    vector: Mapping[str, float] | None = None,
    k: int | None = None,
    query_max_terms: int | None = None,
    include_text: bool | None = None,
    explain: bool | None = None,
    scorer: str | None = None,
    filter: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    fields = {
        "query": query,
        "vector": dict(vector) if vector is not None else None,
        "k": k,
        "query_max_terms": query_max_terms,
        "include_text": include_text,
        "explain": explain,
        # Passed through only when given: a server without scorer choice refuses the field (422 naming it).
        "scorer": scorer,
        # A metadata filter (docs/filters.md), sent as given; the server names a bad part by its path.
        "filter": dict(filter) if filter is not None else None,
    }
    return {name: value for name, value in fields.items() if value is not None}


def batch_body(queries: Iterable[BatchQuery], **defaults: Any) -> dict[str, Any]:
    """`{"queries": [...]}`; each query's own fields win over the call's defaults (k, include_text, ...)."""
    shared = {name: value for name, value in defaults.items() if value is not None}
    body = []
    for item in queries:
        own = {"query": item} if isinstance(item, str) else dict(item)
        body.append(search_body(**{**shared, **own}))
    return {"queries": body}


def request_headers(headers: Mapping[str, str] | None, api_key: str | None) -> dict[str, str]:
    """`headers` plus `Authorization: Bearer <api_key>` when a key is given (the service's SPLADE_API_KEY)."""
    merged = dict(headers or {})
    if api_key is not None:
        merged["Authorization"] = f"Bearer {api_key}"
    return merged
