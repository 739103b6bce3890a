"""One shard's side of a search: the engine's scorers over one document range, then ids, text and per-term
contributions for the hits the merge kept.

A shard is an ordinary index (`python -m index_builder shard` writes them; its manifest's `shard` key says which
documents it holds), served through engine.ServedIndex and engine.Searcher's own scoring code, so each shard
scores exactly as the single-process service scores the same documents.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine import InvalidQueryError, ServedIndex, SparseQuery, open_index
from engine.index_format import InvertedIndex
from engine.searcher import Searcher
from splade_ray.merge import ShardTop


class ShardSearcher:
    """Scores queries on one shard; `first_document` turns its local numbers into the whole index's."""

    def __init__(self, index: InvertedIndex, scorer_override: str | None = None) -> None:
        shard = index.manifest.get("shard")
        if not isinstance(shard, Mapping) or "first_document" not in shard:
            raise ValueError(f"{index.path} is not a shard (its manifest has no `shard` entry): split an index with "
                             "`python -m index_builder shard`")
        self.served = ServedIndex(index, scorer_override)
        self.number = int(shard["number"])
        self.first_document = int(shard["first_document"])

    @classmethod
    def from_path(cls, shard_dir: str | Path, scorer_override: str | None = None) -> ShardSearcher:
        return cls(open_index(shard_dir), scorer_override)

    def describe(self) -> dict[str, Any]:
        with self.served.acquire() as snapshot:
            return {"number": self.number, "first_document": self.first_document,
                    "documents": snapshot.index.num_documents, "postings": snapshot.index.num_postings,
                    "manifest": snapshot.index.manifest, "default_scorer": snapshot.default_scorer,
                    "choices": snapshot.choices, "available": snapshot.available_scorers}

    def check(self, scorer: str | None, scorer_options: Mapping[str, Any] | None) -> None:
        """InvalidQueryError unless this shard serves `scorer` with `scorer_options` (the same checks as the
        single-process pipeline's)."""
        with self.served.acquire() as snapshot:
            snapshot.scorer(scorer)
            snapshot.options(scorer, scorer_options)

    def search(self, term_ids: np.ndarray, weights: np.ndarray, k: int, scorer: str | None = None,
               scorer_options: Mapping[str, Any] | None = None) -> tuple[ShardTop, str]:
        """This shard's top-k (local numbers) and the name of the scorer that served it."""
        started = time.perf_counter()
        query = SparseQuery(np.ascontiguousarray(term_ids, dtype=np.int32),
                            np.ascontiguousarray(weights, dtype=np.float32))
        if k < 1:
            raise InvalidQueryError("k", f"must be a positive integer, got {k!r}", 1)
        with self.served.acquire() as snapshot:
            top, served_by = snapshot.search(query, k, scorer, scorer_options)
        return ShardTop(self.number, self.first_document, np.asarray(top.doc_numbers, np.int64),
                        np.asarray(top.scores, np.float32), dict(top.stats), time.perf_counter() - started), served_by

    def details(self, local_docs: list[int], include_text: bool, explain: bool,
                term_ids: np.ndarray | None = None, weights: np.ndarray | None = None) -> list[dict[str, Any]]:
        """For the hits the merge kept: id, and title/text and {term id: contribution} when asked."""
        with self.served.acquire() as snapshot:
            index = snapshot.index
            ids = index.external_ids(np.asarray(local_docs, np.int64))
            out = []
            for doc, doc_id in zip(local_docs, ids):
                item: dict[str, Any] = {"id": doc_id}
                if include_text:
                    stored = index.document(doc)
                    if stored is not None:
                        item["title"], item["text"] = stored.get("title", ""), stored.get("text", "")
                if explain:
                    item["contributions"] = term_contributions(index, doc, term_ids, weights)
                out.append(item)
            return out

    def warm_up(self) -> None:
        """Run every scorer this shard serves on a one-term query (its longest posting list), so the first
        request does not pay for loading the compiled kernels."""
        with self.served.acquire() as snapshot:
            lengths = np.diff(np.asarray(snapshot.index.offsets))
            query = SparseQuery(np.array([int(np.argmax(lengths))], np.int32), np.ones(1, np.float32))
            for name in snapshot.choices:
                snapshot.search(SparseQuery.empty(), 1, name)
                snapshot.search(query, 10, name)


def term_contributions(index: InvertedIndex, doc: int, term_ids: np.ndarray, weights: np.ndarray
                       ) -> dict[int, float]:
    """engine.Searcher.contributions keyed by term id (the ingress names the tokens): same arithmetic."""
    tokens = _TermIds()
    parts = Searcher.contributions(tokens, index, doc, SparseQuery(np.asarray(term_ids, np.int32),
                                                                   np.asarray(weights, np.float32)))
    return {int(term): value for term, value in parts.items()}


class _TermIds:
    """Stands in for Searcher's `self`: its contributions() names a term through `self.encoder.token(term)`."""

    class encoder:  # noqa: N801 - mimics the attribute Searcher.contributions reads
        @staticmethod
        def token(term: int) -> int:
            return term
