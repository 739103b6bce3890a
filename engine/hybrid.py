"""Query modes: `splade` (the learned field), `bm25` (the BM25 field, engine.bm25) and `hybrid` (both, fused).

A hybrid query runs the SPLADE score path (engine.Searcher.score, the request's scorer) and the BM25 field, each
to a depth of `fusion.retriever_depth(k)` = max(2k, 100) documents (at most the collection), and fuses the two
lists (engine.fusion: reciprocal rank fusion or a normalized linear combination). With `explain`, every hit
carries each subquery's score and rank (None where that retriever did not return it within its depth).
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import numpy as np

from engine import bm25, fusion, query_pruning, two_phase
from engine.errors import InvalidQueryError
from engine.index_format import InvertedIndex
from engine.query import SparseQuery

if TYPE_CHECKING:
    from engine.searcher import Hit, ScoredQuery, SearchOptions, Searcher
    from engine.snapshot import Snapshot

MODES = ("splade", "bm25", "hybrid")


def available_modes(index: InvertedIndex) -> list[str]:
    return list(MODES) if bm25.has_field(index) else ["splade"]


def check_mode(index: InvertedIndex, mode: str, has_text: bool = True) -> str:
    """`mode` if this index can serve it for this query; InvalidQueryError naming the field `mode` otherwise."""
    if mode not in MODES:
        raise InvalidQueryError("mode", f"unknown mode {mode!r}", list(MODES))
    if mode != "splade":
        bm25.field_of(index, "mode")
        if not has_text:
            raise InvalidQueryError("mode", f"mode {mode!r} needs a text `query` (a `vector` has no text to "
                                            "analyse for BM25)", "splade")
    return mode


def score_mode(searcher: Searcher, snapshot: Snapshot, query: SparseQuery, text: str | None,
               options: SearchOptions) -> ScoredQuery:
    from engine.searcher import ScoredQuery, with_filter_mask

    mode = check_mode(snapshot.index, options.mode or searcher.mode, text is not None)
    options = with_filter_mask(options, snapshot.index)  # the request's filter -> `allowed`, once for all retrievers
    query = query_pruning.prune(query, options.query_weight_mass, options.query_weight_ratio)
    if options.two_phase_ratio is not None and snapshot.passages is not None:
        raise InvalidQueryError("two_phase_ratio", "two-phase rescoring is not available on a passage index "
                                                   "(built with --passage-tokens)")
    if mode == "splade":
        return dataclasses.replace(_splade(searcher, snapshot, query, options), mode="splade")
    started = time.perf_counter()
    field = bm25.field_of(snapshot.index)
    bm25_query = field.query(text)
    if mode == "bm25":
        docs, scores, postings = field.search(bm25_query, _k(options.k), options.allowed)
        hits = _hits(searcher, snapshot, docs.tolist(), scores.tolist(), options,
                     lambda doc: field.contributions(doc, bm25_query))
        return ScoredQuery(hits, "exact", {"postings_traversed": postings}, time.perf_counter() - started, "bm25")

    spec = (options.fusion or searcher.fusion).checked()
    k = _k(options.k)
    depth = fusion.retriever_depth(k, snapshot.index.num_documents)
    # The SPLADE list as arrays (no Hit objects or ids for the `depth` documents: that cost more than scoring).
    if options.two_phase_ratio is None:
        top, served_by = snapshot.search(query, depth, options.scorer, options.scorer_options, options.allowed)
        learned_docs, learned_scores, learned_stats = top.doc_numbers, top.scores, top.stats
        passage_rows = getattr(top, "passage_rows", None)
    else:
        learned_docs, learned_scores, learned_stats, served_by = two_phase.search(
            snapshot, query, depth, options.two_phase_ratio, options.scorer, options.scorer_options, options.allowed)
        passage_rows = None
    lists = {"splade": fusion.Ranked(learned_docs, learned_scores)}
    docs, scores, postings = field.search(bm25_query, depth, options.allowed)
    lists["bm25"] = fusion.Ranked(docs, scores)
    fused_docs, fused_scores = fusion.fuse(lists, spec, k)
    ranks = {name: fusion.ranks_of(ranked) for name, ranked in lists.items()} if options.explain else {}
    # A passage index: SPLADE scored each document's best passage (its row); BM25 scored whole documents.
    row_of = {} if passage_rows is None else dict(zip(learned_docs.tolist(), passage_rows.tolist()))
    hits = _hits(searcher, snapshot, fused_docs.tolist(), fused_scores.tolist(), options,
                 lambda doc: searcher.contributions(snapshot.index, row_of.get(doc, doc), query)
                 if passage_rows is None or doc in row_of else {})
    for hit in hits if options.explain else ():
        hit.subqueries = {name: _subquery(ranks[name].get(hit.doc_number)) for name in lists}
    for hit in hits if row_of else ():
        if hit.doc_number in row_of:  # a document only BM25 returned has no SPLADE passage
            hit.passage = snapshot.passages.passage(row_of[hit.doc_number])
    stats = {"postings_traversed": int(learned_stats.get("postings_traversed", 0)) + postings}
    return ScoredQuery(hits, served_by, stats, time.perf_counter() - started, "hybrid")


def _splade(searcher: Searcher, snapshot: Snapshot, query: SparseQuery, options: SearchOptions) -> ScoredQuery:
    """The SPLADE field's answer: the scorer's, or two-phase (engine.two_phase) when the request asks for it."""
    if options.two_phase_ratio is None:
        return searcher.score(snapshot, query, options)
    from engine.searcher import ScoredQuery

    started = time.perf_counter()
    docs, scores, stats, served_by = two_phase.search(snapshot, query, _k(options.k), options.two_phase_ratio,
                                                  options.scorer, options.scorer_options, options.allowed)
    hits = _hits(searcher, snapshot, docs.tolist(), scores.tolist(), options,
                 lambda doc: searcher.contributions(snapshot.index, doc, query))
    return ScoredQuery(hits, served_by, stats, time.perf_counter() - started)


def _k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidQueryError("k", f"must be a positive integer, got {k!r}", 1)
    return k


def _subquery(found: tuple[int, float] | None) -> dict:
    return {"rank": None, "score": None} if found is None else {"rank": found[0], "score": found[1]}


def _hits(searcher: Searcher, snapshot: Snapshot, docs: list[int], scores: list[float], options: SearchOptions,
          contributions) -> list[Hit]:
    from engine.searcher import Hit

    index = snapshot.index
    ids = index.external_ids(np.asarray(docs, dtype=np.int64)) if docs else []
    hits = []
    for doc, doc_id, score in zip(docs, ids, scores):
        hit = Hit(doc, doc_id, float(score))
        if options.include_text:
            stored = index.document(doc)
            if stored is not None:
                hit.title, hit.text = stored.get("title", ""), stored.get("text", "")
        if options.explain:
            hit.contributions = contributions(doc)
        hits.append(hit)
    return hits
