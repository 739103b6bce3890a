"""Metadata and filters on a segmented index: documents added by the writer carry metadata under the index's
schema (wrong types refused, naming the field), a merge keeps it, and a filtered search over a generation
equals the same filter on a from-scratch build of the surviving documents (ids and scores), for every
registered scorer."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine import filters, scorers
from engine.index_format import add_parts, open_index
from engine.lifecycle import DocumentError, IndexWriter, NewDocument
from engine.query import SparseQuery
from engine.segments import open_searchable
from engine.snapshot import Snapshot
from index_builder.csr_index import build_index_from_csr

VOCAB = 300
LANGS = ["en", "de", "fr"]
FILTERS = [{"lang": "en"}, {"year": {"gte": 2015, "lt": 2020}}, {"or": [{"tags": "b"}, {"not": {"lang": "de"}}]},
           {"and": [{"lang": {"in": ["de", "fr"]}}, {"open": True}]}]


def random_docs(rng, prefix: str, n: int) -> dict[str, tuple[dict[int, float], dict]]:
    docs = {}
    for i in range(n):
        terms = rng.choice(VOCAB, int(rng.integers(5, 30)), replace=False)
        vector = {int(t): float(w) for t, w in zip(terms, rng.uniform(0.1, 3.0, len(terms)))}
        meta = {"lang": LANGS[int(rng.integers(3))], "year": int(rng.integers(2005, 2025)),
                "open": bool(rng.integers(2)), "tags": sorted(set(rng.choice(["a", "b", "c"], 2).tolist()))}
        docs[f"{prefix}{i}"] = (vector, meta)
    return docs


def every_part_writer():
    return [w for cls in scorers.registered().values() for w in cls.part_writers()]


def build(out, docs: dict, scale: float | None = None) -> None:
    """A plain index with metadata and every scorer's part (new segments then get those parts too)."""
    ids = list(docs)
    indptr, terms, weights = [0], [], []
    for doc_id in ids:
        vector = sorted(docs[doc_id][0].items())
        terms += [t for t, _ in vector]
        weights += [w for _, w in vector]
        indptr.append(len(terms))
    build_index_from_csr(out, np.array(indptr), np.array(terms, np.int32), np.array(weights, np.float32),
                         vocab_size=VOCAB, ids=ids, metadata=[docs[i][1] for i in ids], impact_scale=scale)
    add_parts(out, every_part_writer())


def new_documents(docs: dict) -> list[NewDocument]:
    out = []
    for doc_id, (vector, meta) in docs.items():
        terms = np.array(sorted(vector), np.int32)
        out.append(NewDocument(doc_id, terms, np.array([vector[t] for t in terms], np.float32), metadata=meta))
    return out


def answers(index, queries, raw_filter, scorer: str) -> list[tuple[list[str], bytes]]:
    snapshot = Snapshot(index, scorer)
    allowed = filters.allowed(index, filters.parse(raw_filter))
    out = []
    for query in queries:
        top, _ = snapshot.search(query, 10, scorer, None, allowed)
        out.append((index.external_ids(top.doc_numbers), top.scores.tobytes()))
    return out


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    rng = np.random.default_rng(17)
    root = tmp_path_factory.mktemp("segment_metadata")
    live = random_docs(rng, "base", 400)
    index_dir = root / "index"
    build(index_dir, live)
    scale = open_index(index_dir).scale
    for round_number in range(3):  # three commits: adds with metadata and deletes
        added = random_docs(rng, f"r{round_number}-", 60)
        gone = [str(d) for d in rng.choice(sorted(live), 25, replace=False)]
        with IndexWriter(index_dir) as writer:
            writer.add(new_documents(added))
            assert writer.delete(gone) == []
            writer.commit()
        for doc_id in gone:
            del live[doc_id]
        live.update(added)
    queries = []
    for _ in range(12):
        terms = rng.choice(VOCAB, 12, replace=False)
        weights = np.sort(rng.uniform(0.2, 2.0, 12))[::-1]
        queries.append(SparseQuery(terms.astype(np.int32), weights.astype(np.float32)))
    return index_dir, live, scale, queries, root


@pytest.mark.parametrize("scorer", sorted(scorers.registered()))
def test_filtered_search_over_segments_equals_a_fresh_build(lifecycle, scorer):
    index_dir, live, scale, queries, root = lifecycle
    fresh = root / f"fresh-{scorer}"
    build(fresh, live, scale)
    segmented = open_searchable(index_dir)
    assert len(segmented.segments) > 1 and segmented.deleted_documents > 0
    assert scorers.registered()[scorer].requires <= set(segmented.parts)
    reference = open_index(fresh)
    for raw in FILTERS:
        got = answers(segmented, queries, raw, scorer)
        want = answers(reference, queries, raw, scorer)
        if scorers.registered()[scorer].safe:
            assert got == want, raw
        else:  # approximate: as many hits, and recall at its declared floor over these queries
            recall = np.mean([len(set(g) & set(w)) / max(len(w), 1) for (g, _), (w, _) in zip(got, want)])
            assert all(len(g) == len(w) for (g, _), (w, _) in zip(got, want)) and recall >= \
                scorers.registered()[scorer].recall_floor


def test_a_merge_keeps_every_live_document_metadata(lifecycle, tmp_path):
    index_dir, live, scale, queries, root = lifecycle
    copy = tmp_path / "merged"
    shutil.copytree(index_dir, copy)
    with IndexWriter(copy) as writer:
        writer.force_merge(1)
    merged = open_searchable(copy)
    assert len(merged.segments) == 1 and merged.deleted_documents == 0
    for raw in FILTERS:
        assert answers(merged, queries, raw, "exact") == answers(open_searchable(index_dir), queries, raw, "exact")


def test_wrong_metadata_types_are_refused_naming_the_field(lifecycle, tmp_path):
    index_dir, *_ = lifecycle
    doc = NewDocument("bad", np.array([1, 2], np.int32), np.array([1.0, 0.5], np.float32), metadata={"year": "x"})
    with IndexWriter(index_dir) as writer:
        with pytest.raises(DocumentError, match=r"documents\[0\]\.metadata\.year"):
            writer.add([doc])
        assert not writer.has_changes
