"""The engine's one query path (Searcher) on a real index (300 SciFact documents) with the real query encoder."""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine import (STAGES, IncompatibleArtifactsError, InvalidQueryError, SearchOptions, Searcher, SparseQuery,
                    UnknownTokenError)
from engine.index_format import open_index
from index_builder.csr_index import build_index_from_csr
from models.runtime import load_query_encoder

QUERIES = [
    "Do proteins fold into their native structure quickly?",
    "vitamin D deficiency and bone fractures in the elderly",
    "cerebral white matter development in newborns",
    "gene expression in cancer cells",
    "antibiotic resistance",
    "x",
]


@pytest.fixture(scope="module")
def encoder(default_model_dir):
    return load_query_encoder(default_model_dir)


@pytest.fixture(scope="module")
def searcher(small_index_dir, encoder):
    searcher = Searcher(open_index(small_index_dir), encoder)
    searcher.warm_up()
    return searcher


@pytest.fixture(scope="module")
def corpus_lines(small_corpus):
    return [json.loads(line) for line in small_corpus.read_text(encoding="utf-8").splitlines()]


def dense_scores(index, query: SparseQuery) -> np.ndarray:
    """Brute force over the whole index: float32 sums in query-term order, as the scorer defines them."""
    acc = np.zeros(index.num_documents, dtype=np.float32)
    for term, weight in zip(query.term_ids, query.weights):
        docs, impacts = index.postings(int(term))
        acc[docs] += (np.float32(weight) * np.float32(index.scale)) * impacts.astype(np.float32)
    return acc


@pytest.mark.parametrize("text", QUERIES)
def test_text_search_equals_brute_force(searcher, text):
    result = searcher.search(text, k=20)
    query = searcher.encode_texts([text]).queries[0]
    acc = dense_scores(searcher.index, query)
    matching = np.flatnonzero(acc > 0)
    expected = matching[np.lexsort((matching, -acc[matching]))][:20]
    assert [hit.doc_number for hit in result.hits] == expected.tolist()
    assert [hit.score for hit in result.hits] == acc[expected].tolist()
    assert [hit.id for hit in result.hits] == [searcher.index.external_id(d) for d in expected]
    assert result.postings_traversed == sum(len(searcher.index.postings(int(t))[0]) for t in query.term_ids)
    assert all(getattr(result.timings, stage) >= 0 for stage in STAGES)
    assert result.timings.queue == 0.0 and result.scorer == "exact"


def test_relevant_document_ranks_first(searcher, corpus_lines):
    # The first corpus document's own title should retrieve it at rank 1.
    first = corpus_lines[0]
    result = searcher.search(first["title"], k=3)
    assert result.hits[0].id == first["_id"]


def test_include_text_and_explain(searcher, corpus_lines):
    by_id = {line["_id"]: line for line in corpus_lines}
    result = searcher.search(QUERIES[1], k=5, include_text=True, explain=True)
    assert len(result.hits) == 5
    for hit in result.hits:
        assert (hit.title, hit.text) == (by_id[hit.id]["title"], by_id[hit.id]["text"])
        assert hit.contributions, "a hit has at least one matching term"
        assert set(hit.contributions) <= {token for token, _ in result.query_terms}
        assert math.isclose(sum(hit.contributions.values()), hit.score, rel_tol=1e-5)
    weights = [weight for _, weight in result.query_terms]
    assert weights == sorted(weights, reverse=True) and all(w > 0 for w in weights)
    plain = searcher.search(QUERIES[1], k=5)
    assert all(hit.text is None and hit.contributions is None for hit in plain.hits)


def test_query_max_terms_and_its_limit(searcher, small_index_dir, encoder):
    result = searcher.search(QUERIES[0], k=5, query_max_terms=4)
    full = searcher.search(QUERIES[0], k=5)
    assert len(result.query_terms) == 4
    assert result.query_terms == full.query_terms[:4]
    limited = Searcher(open_index(small_index_dir), encoder, max_query_terms=8)
    assert len(limited.search(QUERIES[0]).query_terms) == 8
    with pytest.raises(InvalidQueryError, match="query_max_terms: 9 exceeds the limit of 8") as caught:
        limited.search(QUERIES[0], query_max_terms=9)
    assert (caught.value.field, caught.value.limit) == ("query_max_terms", 8)


def test_vector_query_matches_text_query(searcher):
    text_result = searcher.search(QUERIES[2], k=10)
    vector = dict(text_result.query_terms)
    vector_result = searcher.search(vector, k=10)
    assert [(h.id, h.score) for h in vector_result.hits] == [(h.id, h.score) for h in text_result.hits]
    assert vector_result.timings.tokenize == 0.0
    pruned = searcher.vector_query({"protein": 0.5, "fold": 2.0, "native": 1.0, "the": 0.0}, max_terms=2)
    assert [searcher.encoder.token(t) for t in pruned.term_ids] == ["fold", "native"]


@pytest.mark.parametrize("vector, error, message", [
    ({"zzzznotatoken": 1.0}, UnknownTokenError, "unknown token 'zzzznotatoken'"),
    ({"protein": -1.0}, ValueError, "weight of token 'protein' is negative"),
    ({"protein": float("nan")}, ValueError, "weight of token 'protein' is not finite"),
    ({"protein": float("inf")}, ValueError, "weight of token 'protein' is not finite"),
    ({"protein": "high"}, ValueError, "weight of token 'protein' must be a number"),
])
def test_bad_vector_queries_are_clear_errors(searcher, vector, error, message):
    with pytest.raises(error, match=message):
        searcher.vector_query(vector)


def test_bad_k_and_empty_vector(searcher):
    for k in (0, -1, 2.5, True):
        with pytest.raises(InvalidQueryError, match="k: must be a positive integer"):
            searcher.search(QUERIES[0], k=k)
    empty = searcher.search({}, k=10)
    assert empty.hits == [] and empty.postings_traversed == 0 and empty.query_terms == []
    everything = searcher.search({"the": 1.0, "of": 1.0, "and": 1.0}, k=100_000)
    assert 0 < len(everything.hits) <= searcher.index.num_documents


def test_concurrent_scoring_gives_the_sequential_results(searcher):
    queries = searcher.encode_texts(QUERIES * 4).queries
    options = SearchOptions(k=50)
    with searcher.acquire() as snapshot:
        sequential = [searcher.score(snapshot, q, options) for q in queries]
        with ThreadPoolExecutor(max_workers=4) as pool:
            concurrent = list(pool.map(lambda q: searcher.score(snapshot, q, options), queries * 3))
    for i, scored in enumerate(concurrent):
        expected = sequential[i % len(queries)]
        assert [(h.doc_number, h.score) for h in scored.hits] == [(h.doc_number, h.score) for h in expected.hits]
        assert scored.postings_traversed == expected.postings_traversed


def test_search_batch_equals_single_searches(searcher):
    batch = searcher.search_batch([QUERIES[0], {"protein": 1.0}, QUERIES[3]], k=7)
    singles = [searcher.search(QUERIES[0], k=7), searcher.search({"protein": 1.0}, k=7),
               searcher.search(QUERIES[3], k=7)]
    for got, want in zip(batch, singles):
        assert [(h.id, h.score) for h in got.hits] == [(h.id, h.score) for h in want.hits]


def test_index_from_another_vocabulary_is_refused(tmp_path, encoder, small_index_dir):
    rng = np.random.default_rng(0)
    indptr = np.array([0, 3], dtype=np.int64)
    build_index_from_csr(tmp_path / "other", indptr, np.array([1, 5, 9]), rng.random(3, dtype=np.float32) + 0.1,
                         vocab_size=encoder.vocab_size, tokenizer_sha256="0" * 64)
    with pytest.raises(IncompatibleArtifactsError, match="tokenizer_sha256"):
        Searcher(open_index(tmp_path / "other"), encoder)
    build_index_from_csr(tmp_path / "small", indptr, np.array([1, 5, 9]), rng.random(3, dtype=np.float32) + 0.1,
                         vocab_size=100, tokenizer_sha256=encoder.tokenizer_sha256)
    with pytest.raises(IncompatibleArtifactsError, match="vocab_size 100 \\(index\\) != 30522"):
        Searcher(open_index(tmp_path / "small"), encoder)
    served = Searcher(open_index(small_index_dir), encoder)
    with pytest.raises(IncompatibleArtifactsError, match="vocab_size 100"):
        served.swap_index(open_index(tmp_path / "small"))
    assert served.served.current.generation == 0  # refused: the old index keeps serving


def test_unknown_scorer_and_options_name_the_field(searcher):
    with pytest.raises(InvalidQueryError, match="unknown scorer: 'bm99'; this index serves \\['exact', 'exact-blocked'\\]") as caught:
        searcher.search(QUERIES[0], scorer="bm99")
    assert caught.value.field == "scorer" and caught.value.limit == ["exact", "exact-blocked"]
    with pytest.raises(InvalidQueryError, match="scorer 'exact' has no option 'heap_factor'") as caught:
        searcher.search(QUERIES[0], scorer="exact", scorer_options={"heap_factor": 0.9})
    assert caught.value.field == "scorer_options.heap_factor"


def test_a_search_keeps_its_snapshot_across_a_swap(small_index_dir, encoder, tmp_path):
    """The snapshot rule: a search that started on one index finishes on it, even if another is swapped in."""
    searcher = Searcher(open_index(small_index_dir), encoder)
    query = searcher.encode_texts([QUERIES[1]]).queries[0]
    before = searcher.search(QUERIES[1], k=5)
    # A second index: the same documents with the first half dropped (other ids, other ranking).
    first = open_index(small_index_dir)
    keep = np.arange(first.num_documents // 2, first.num_documents)
    rows = [[], []]
    for term in range(first.vocab_size):
        docs, impacts = first.postings(term)
        for doc, impact in zip(docs.tolist(), impacts.tolist()):
            if doc >= keep[0]:
                rows[0].append((doc - keep[0], term, impact * first.scale))
    rows[0].sort()
    indptr = np.searchsorted([r[0] for r in rows[0]], np.arange(len(keep) + 1)).astype(np.int64)
    build_index_from_csr(tmp_path / "half", indptr, np.array([r[1] for r in rows[0]], np.int32),
                         np.array([r[2] for r in rows[0]], np.float32), vocab_size=first.vocab_size,
                         tokenizer_sha256=first.tokenizer_sha256,
                         ids=[first.external_id(int(d)) for d in keep])
    with searcher.acquire() as held:
        swapped = searcher.swap_index(open_index(tmp_path / "half"))
        assert swapped.generation == held.generation + 1 and held.in_use == 1
        during = searcher.score(held, query, SearchOptions(k=5))  # still the old index
        assert [(h.id, h.score) for h in during.hits] == [(h.id, h.score) for h in before.hits]
    assert held.in_use == 0
    after = searcher.search(QUERIES[1], k=5)
    assert {h.id for h in after.hits} <= {first.external_id(int(d)) for d in keep}
    assert [h.id for h in after.hits] != [h.id for h in before.hits]


@pytest.mark.parametrize("mode", ["splade", "bm25", "hybrid"])
def test_allowed_mask_reaches_every_mode(searcher, mode):
    """A mask (from a filter or deletes) restricts every mode's hits during the search: the masked ranking is
    the unmasked full ranking with the excluded documents taken out, and k hits come back."""
    text = "cerebral white matter development in newborns"
    n = searcher.index.num_documents
    allowed = np.zeros(n, dtype=bool)
    allowed[::3] = True
    query = searcher.encode_texts([text]).queries[0]
    with searcher.acquire() as snapshot:
        full = searcher.score_mode(snapshot, query, text, SearchOptions(k=n, mode=mode))
        masked = searcher.score_mode(snapshot, query, text, SearchOptions(k=10, mode=mode, allowed=allowed))
    assert len(masked.hits) == 10 and all(allowed[hit.doc_number] for hit in masked.hits)
    if mode == "hybrid":
        return  # fusion ranks depend on each retriever's own (masked) lists; covered by the two above
    expected = [hit.doc_number for hit in full.hits if allowed[hit.doc_number]][:10]
    assert [hit.doc_number for hit in masked.hits] == expected
