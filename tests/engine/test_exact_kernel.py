"""The exact kernel against the shared oracle (tests/support/oracle.py) at the array level: both accumulator
paths, the accumulator left clean, postings counts, the tie rule, and the uint8 quantization cost."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index_builder.csr_index import build_index_from_csr
from engine.index_format import open_index
from engine.kernels.exact import SPARSE_FRACTION, score_exact
from tests.support.oracle import brute_force_top_k, random_postings, scipy_scores, zipf_collection


def check_against_reference(offsets, doc_numbers, impacts, term_ids, weights, scale, k, num_docs):
    acc = np.zeros(num_docs, dtype=np.float32)
    docs, scores, postings = score_exact(offsets, doc_numbers, impacts, np.asarray(term_ids, np.int32),
                                         np.asarray(weights, np.float32), scale, k, acc)
    ref_docs, ref_scores = brute_force_top_k(offsets, doc_numbers, impacts, term_ids, weights, scale, k, num_docs)
    np.testing.assert_array_equal(docs, ref_docs)
    np.testing.assert_array_equal(scores, ref_scores)  # bitwise: same float32 sums
    assert not acc.any(), "the accumulator must be left all zeros"
    vocab = len(offsets) - 1
    expected_postings = sum(int(offsets[t + 1] - offsets[t]) for t in term_ids if 0 <= t < vocab)
    assert postings == expected_postings
    if len(docs):
        exact = scipy_scores(offsets, doc_numbers, impacts, term_ids, weights, scale, num_docs)
        np.testing.assert_allclose(scores, exact[docs], rtol=1e-5)
    return docs, scores


@st.composite
def scoring_case(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Large, sparse collections exercise the postings-walk path; small, dense ones the full scan.
    sparse_regime = draw(st.booleans())
    num_docs = draw(st.integers(200, 3000)) if sparse_regime else draw(st.integers(1, 80))
    vocab = draw(st.integers(1, 40))
    density = draw(st.floats(0.0005, 0.01)) if sparse_regime else draw(st.floats(0.0, 0.6))
    # Few impact levels and repeated weights make ties common, so the tie rule is really tested.
    max_impact = draw(st.sampled_from([1, 3, 255, 65535]))
    dtype = np.uint16 if max_impact > 255 else np.uint8
    offsets, doc_numbers, impacts = random_postings(rng, num_docs, vocab, density, max_impact, dtype)
    # Terms may repeat the same weight, be absent from the index (no postings) or lie outside the vocabulary.
    num_terms = draw(st.integers(0, min(12, vocab + 4)))
    term_ids = draw(st.lists(st.integers(0, vocab + 3), min_size=num_terms, max_size=num_terms, unique=True))
    weight = st.one_of(st.sampled_from([0.5, 1.0, 2.0]), st.floats(0.0009765625, 10.0, width=32))
    weights = draw(st.lists(weight, min_size=num_terms, max_size=num_terms))
    scale = draw(st.sampled_from([1.0, 0.01, 3.7 / 255]))
    k = draw(st.integers(1, num_docs + 10))
    return offsets, doc_numbers, impacts, term_ids, weights, scale, k, num_docs


@settings(max_examples=300, deadline=None)
@given(scoring_case())
def test_matches_brute_force_on_random_indexes(case):
    check_against_reference(*case)


@pytest.fixture(scope="module")
def heavy_tailed_index(tmp_path_factory):
    rng = np.random.default_rng(7)
    matrix = zipf_collection(rng, num_docs=4000, vocab=2000, terms_per_doc=40)
    out = tmp_path_factory.mktemp("heavy") / "index"
    build_index_from_csr(out, matrix.indptr, matrix.indices, matrix.data, vocab_size=matrix.shape[1])
    return open_index(out), matrix


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.sampled_from([1, 10, 100, 1000, 5000]), terms=st.integers(0, 40))
def test_matches_brute_force_on_heavy_tailed_index(heavy_tailed_index, seed, k, terms):
    index, matrix = heavy_tailed_index
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, matrix.shape[1] + 1) ** 0.8
    term_ids = np.unique(rng.choice(matrix.shape[1], size=terms, p=popularity / popularity.sum()))
    weights = rng.lognormal(0.0, 0.5, size=len(term_ids)).astype(np.float32)
    docs, scores = check_against_reference(index.offsets, index.doc_numbers, index.impacts, term_ids, weights,
                                           index.scale, k, index.num_documents)


def test_uint8_ranking_stays_close_to_float_on_heavy_tailed_index(heavy_tailed_index):
    """Quantization cost: mean recall@10 of the uint8 index against float scores over 200 queries."""
    index, matrix = heavy_tailed_index
    rng = np.random.default_rng(11)
    popularity = 1.0 / np.arange(1, matrix.shape[1] + 1) ** 0.8
    recalls = []
    acc = np.zeros(index.num_documents, dtype=np.float32)
    for _ in range(200):
        term_ids = np.unique(rng.choice(matrix.shape[1], size=25, p=popularity / popularity.sum())).astype(np.int32)
        weights = rng.lognormal(0.0, 0.5, size=len(term_ids)).astype(np.float32)
        docs, _, _ = score_exact(index.offsets, index.doc_numbers, index.impacts, term_ids, weights, index.scale,
                                 10, acc)
        float_scores = matrix @ np.bincount(term_ids, weights=weights, minlength=matrix.shape[1])
        best = np.lexsort((np.arange(len(float_scores)), -float_scores))[:10]
        recalls.append(len(np.intersect1d(best, docs)) / 10)
    assert np.mean(recalls) >= 0.97


def test_both_accumulator_paths_agree():
    """One query scored by the full scan and, with a larger accumulator, by the postings walk: same hits."""
    rng = np.random.default_rng(3)
    offsets, doc_numbers, impacts = random_postings(rng, 1000, 20, 0.05, 3, np.uint8)
    term_ids, weights = [0, 1, 2], [1.0, 1.0, 0.5]
    postings = int(sum(offsets[t + 1] - offsets[t] for t in term_ids))
    assert postings * SPARSE_FRACTION >= 1000  # full scan over 1,000 documents
    full = check_against_reference(offsets, doc_numbers, impacts, term_ids, weights, 1.0, 50, 1000)
    assert postings * SPARSE_FRACTION < 100_000  # postings walk over 100,000 (documents >= 1,000 match nothing)
    walked = check_against_reference(offsets, doc_numbers, impacts, term_ids, weights, 1.0, 50, 100_000)
    np.testing.assert_array_equal(full[0], walked[0])
    np.testing.assert_array_equal(full[1], walked[1])


def test_empty_query_and_k_beyond_matches():
    rng = np.random.default_rng(1)
    offsets, doc_numbers, impacts = random_postings(rng, 100, 5, 0.1, 255, np.uint8)
    acc = np.zeros(100, dtype=np.float32)
    docs, scores, postings = score_exact(offsets, doc_numbers, impacts, np.zeros(0, np.int32),
                                         np.zeros(0, np.float32), 1.0, 10, acc)
    assert len(docs) == 0 and len(scores) == 0 and postings == 0
    term = int(np.argmax(np.diff(offsets)))
    df = int(offsets[term + 1] - offsets[term])
    docs, _, postings = score_exact(offsets, doc_numbers, impacts, np.array([term], np.int32),
                                    np.array([1.0], np.float32), 1.0, 1000, acc)
    assert len(docs) == df == postings
    assert sorted(docs.tolist()) == doc_numbers[offsets[term]:offsets[term + 1]].tolist()


def test_ties_go_to_the_lower_document_number():
    # Every document has impact 1 on term 0: all scores tie, so the top 3 are documents 0, 1, 2.
    num_docs = 50
    offsets = np.array([0, num_docs], dtype=np.int64)
    doc_numbers = np.arange(num_docs, dtype=np.uint32)
    impacts = np.ones(num_docs, dtype=np.uint8)
    acc = np.zeros(num_docs, dtype=np.float32)
    docs, scores, _ = score_exact(offsets, doc_numbers, impacts, np.array([0], np.int32),
                                  np.array([1.0], np.float32), 1.0, 3, acc)
    assert docs.tolist() == [0, 1, 2]
    assert scores.tolist() == [1.0, 1.0, 1.0]
