"""Filtered search through the one query path (engine.Searcher: filter JSON -> engine.filters mask -> the scorer
seam's `allowed`), for every registered scorer and every mode, against the one oracle (tests/support/oracle.py)
applied to the filtered set. The filtered set comes from a plain per-document evaluation of the filter JSON
(tests/engine/test_filters.py), not from the mask under test. Filters range from all-pass to empty, through
very selective ones (where the seam scores the few allowed documents by lookup) and mid-selective ones (where the
scorers traverse with the mask)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from engine import SearchOptions, Searcher, SparseQuery, bm25, scorers
from engine.index_format import add_parts, open_index
from index_builder.bm25_part import part_writer, texts_from_store
from index_builder.csr_index import build_index_from_csr
from models.runtime import load_query_encoder
from tests.engine.test_filters import matches, random_metadata
from tests.support.oracle import brute_force_top_k, zipf_collection

NUM_DOCS = 2500
TERMS = 300           # SPLADE terms used, from FIRST_TERM on in the real vocabulary
FIRST_TERM = 2000     # ordinary word pieces of the BERT vocabulary
WORDS = [f"w{i}" for i in range(60)]  # the BM25 field's texts
KS = (1, 10, 100)
FILTERS = [
    {},                                                       # all-pass, no mask
    {"not": {"lang": "zz"}},                                  # all-pass, as a mask
    {"lang": "zz"},                                           # empty: a value no document has
    {"and": [{"lang": "en"}, {"year": 2016}, {"ok": True}]},  # very selective
    {"year": {"gte": 2025}, "tags": "d", "lang": "de"},       # very selective
    {"lang": "en"},
    {"or": [{"tags": {"in": ["a", "b"]}}, {"score": {"lt": -1.5}}]},
    {"not": {"year": {"gte": 2016, "lte": 2023}}},
]


@pytest.fixture(scope="module")
def encoder(default_model_dir):
    return load_query_encoder(default_model_dir)


@pytest.fixture(scope="module")
def filtered(tmp_path_factory, encoder):
    rng = np.random.default_rng(11)
    matrix = zipf_collection(rng, NUM_DOCS, TERMS, 30)
    term_ids = matrix.indices + FIRST_TERM
    metadata = random_metadata(rng, NUM_DOCS)
    texts = [{"title": "", "text": " ".join(rng.choice(WORDS, size=int(rng.integers(1, 12))).tolist())}
             for _ in range(NUM_DOCS)]
    out = tmp_path_factory.mktemp("filtered") / "index"
    build_index_from_csr(out, matrix.indptr, term_ids, matrix.data, vocab_size=encoder.vocab_size,
                         tokenizer_sha256=encoder.tokenizer_sha256, documents=texts, metadata=metadata)
    writers = [part_writer(texts_from_store)] + [w for cls in scorers.registered().values() for w in cls.part_writers()]
    add_parts(out, writers)
    searcher = Searcher(open_index(out), encoder)
    allowed = {i: np.array([matches(f, doc) for doc in metadata]) for i, f in enumerate(FILTERS)}
    queries = []
    for _ in range(12):
        terms = np.unique(rng.integers(0, TERMS, size=int(rng.integers(1, 30)))) + FIRST_TERM
        weights = rng.lognormal(0.0, 0.5, size=len(terms))
        order = np.lexsort((terms, -weights))
        queries.append(SparseQuery(terms[order].astype(np.int32), weights[order].astype(np.float32)))
    return searcher, allowed, queries


def test_the_filters_cover_every_selectivity(filtered):
    _, allowed, _ = filtered
    counts = [int(mask.sum()) for mask in allowed.values()]
    assert counts[0] == counts[1] == NUM_DOCS and counts[2] == 0
    assert 0 < counts[3] < 40 and 0 < counts[4] < 40  # very selective
    assert all(100 < c < NUM_DOCS - 100 for c in counts[5:])


@pytest.mark.parametrize("name", sorted(scorers.registered()))
def test_filtered_search_equals_the_oracle_on_the_filtered_set(filtered, name):
    searcher, allowed, queries = filtered
    cls = scorers.registered()[name]
    with searcher.acquire() as snapshot:
        index = snapshot.index
        recalls = []
        for i, filter_json in enumerate(FILTERS):
            node = searcher.parse_filter(filter_json)
            for k in KS:
                for query in queries:
                    scored = searcher.score(snapshot, query, SearchOptions(k=k, scorer=name, filter=node))
                    docs = [hit.doc_number for hit in scored.hits]
                    want_docs, want_scores = brute_force_top_k(index.offsets, index.doc_numbers, index.impacts,
                                                               query.term_ids, query.weights, index.scale, k,
                                                               index.num_documents, allowed[i])
                    where = f"{name}, filter {filter_json}, k={k}"
                    assert all(allowed[i][docs]), f"{where}: a document the filter excludes"
                    assert len(docs) == len(want_docs), f"{where}: {len(docs)} hits where {len(want_docs)} exist"
                    if cls.safe:
                        assert docs == want_docs.tolist(), where
                        assert [hit.score for hit in scored.hits] == want_scores.tolist(), where
                    elif len(want_docs):
                        recalls.append(len(set(docs) & set(want_docs.tolist())) / len(want_docs))
        if not cls.safe:
            assert np.mean(recalls) >= cls.recall_floor


@pytest.mark.parametrize("filter_index", range(len(FILTERS)))
def test_bm25_and_hybrid_modes_filter_too(filtered, filter_index):
    searcher, allowed, _ = filtered
    mask = allowed[filter_index]
    node = searcher.parse_filter(FILTERS[filter_index])
    text = "w1 w7 w12 w30 w59"
    with searcher.acquire() as snapshot:
        field = bm25.field_of(snapshot.index)
        query = field.query(text)
        for k in KS:
            scored = searcher.score_mode(snapshot, SparseQuery.empty(), text, SearchOptions(k=k, mode="bm25",
                                                                                             filter=node))
            want_docs, want_scores = brute_force_top_k(field.offsets, field.doc_numbers, field.impacts,
                                                       query.term_ids, query.weights, field.scale, k,
                                                       field.num_documents, mask)
            assert [hit.doc_number for hit in scored.hits] == want_docs.tolist()
            assert [hit.score for hit in scored.hits] == want_scores.tolist()
            splade = searcher.encode_texts([text]).queries[0]
            hybrid = searcher.score_mode(snapshot, splade, text, SearchOptions(k=k, mode="hybrid", filter=node))
            docs = [hit.doc_number for hit in hybrid.hits]
            assert all(mask[docs]) and len(docs) == len(set(docs))
            assert len(docs) >= min(k, len(want_docs))  # at least the BM25 side's matches: k when k exist


def test_search_batch_takes_the_filter_json(filtered):
    searcher, allowed, queries = filtered
    vector = {searcher.encoder.token(int(t)): float(w) for t, w in zip(queries[0].term_ids, queries[0].weights)}
    result = searcher.search(vector, k=10, filter=FILTERS[5])
    assert result.hits and all(allowed[5][[hit.doc_number for hit in result.hits]])
    unfiltered = searcher.search(vector, k=10)
    assert [h.doc_number for h in unfiltered.hits] != [h.doc_number for h in result.hits]
