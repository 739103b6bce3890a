"""The key buffer (engine/topk.py) against a sort by the tie rule, and exact scoring from forward rows
(engine/kernels/forward_scoring.py) against brute force: scores bit for bit, the query table left as found."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from tests.engine.kernel_collections import brute_force_scores, brute_force_top_k, collection, widened

from engine.kernels.forward_index import build_forward
from engine.kernels.forward_scoring import (ABSENT, MAX_QUERY_TERMS, clear_query, new_query_positions, rank_exact,
                                            register_query)
from engine.topk import best_hits, hit_key, key_buffer, key_score, push_key


@njit(cache=True)
def _select(scores, docs, k, keys):
    """What a kernel does: the float test against the bar, then the key test, then push."""
    size = 0
    bar_key = np.uint64(0)
    bar = np.float32(0)
    compactions = 0
    for i in range(scores.shape[0]):
        score = scores[i]
        if score > 0 and score >= bar:
            key = hit_key(score, docs[i])
            if key > bar_key:
                before = size
                size, bar_key = push_key(keys, size, k, key, bar_key)
                compactions += size < before
                bar = key_score(bar_key)
    docs_out, scores_out = best_hits(keys, size, k)
    return docs_out, scores_out, compactions


def _reference(scores, docs, k):
    keep = scores > 0
    order = np.lexsort((docs[keep], -scores[keep]))[:k]
    return docs[keep][order], scores[keep][order]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 400), st.integers(0, 6000), st.sampled_from([3, 50, 100000]))
def test_key_buffer_keeps_the_k_best_by_the_tie_rule(seed, k, n, levels):
    rng = np.random.default_rng(seed)
    # Few levels: many ties, decided by the document number; documents in any order, up to 2^32 - 1.
    scores = (rng.integers(-1, levels, size=n) * np.float32(0.37)).astype(np.float32)
    # Distinct documents (as every kernel offers them) in any order, the extremes 0 and 2^32 - 1 among them.
    docs = rng.choice(2**32 - 2, size=n, replace=False).astype(np.int64) + 1
    docs[:2] = [0, 2**32 - 1][:n]
    docs = rng.permutation(docs)
    got_docs, got_scores, _ = _select(scores, docs, k, key_buffer(k))
    want_docs, want_scores = _reference(scores, docs, k)
    assert np.array_equal(got_docs, want_docs)
    assert np.array_equal(got_scores, want_scores)


def test_key_buffer_compacts_and_stays_exact():
    rng = np.random.default_rng(3)
    n, k = 50_000, 10
    scores = rng.random(n).astype(np.float32)  # ascending-ish bar: many pushes past the buffer
    scores = np.sort(scores)
    docs = np.arange(n, dtype=np.int64)
    got_docs, got_scores, compactions = _select(scores, docs, k, key_buffer(k))
    assert compactions >= (n - len(key_buffer(k))) // len(key_buffer(k))
    want_docs, want_scores = _reference(scores, docs, k)
    assert np.array_equal(got_docs, want_docs) and np.array_equal(got_scores, want_scores)


def test_hit_key_orders_by_score_then_lower_document():
    assert hit_key(np.float32(2.0), 5) > hit_key(np.float32(1.5), 0)
    assert hit_key(np.float32(2.0), 5) > hit_key(np.float32(2.0), 6)
    assert hit_key(np.float32(1e-30), 0) > hit_key(np.float32(1e-31), 0)
    assert key_score(hit_key(np.float32(3.25), 2**32 - 1)) == np.float32(3.25)


@pytest.mark.parametrize("kind", ["random", "heavy", "real_like"])
@pytest.mark.parametrize("wide", [False, True])
def test_rank_exact_is_the_exact_top_k_of_its_candidates(kind, wide):
    c = collection(kind, num_documents=2500, num_queries=20, seed=11)
    c = widened(c) if wide else c
    doc_offsets, forward_terms, forward_impacts = build_forward(c.offsets, c.doc_numbers, c.impacts, c.num_documents)
    positions = new_query_positions(c.vocab_size)
    rng = np.random.default_rng(5)
    for t, w in c.queries:
        exact = brute_force_scores(c, t, w)
        candidates = rng.choice(c.num_documents, size=700, replace=False).astype(np.int64)
        for k in (1, 10, 700):
            terms, _, weights, count = register_query(t, w, c.scale, c.vocab_size, positions)
            docs, scores, entries = rank_exact(candidates, k, doc_offsets, forward_terms, forward_impacts, positions,
                                               weights[:count])
            clear_query(terms, count, positions)
            among = np.zeros(c.num_documents, dtype=np.float32)
            among[candidates] = exact[candidates]
            want_docs, want_scores = brute_force_top_k(among, k)
            assert np.array_equal(docs, want_docs)
            assert np.array_equal(scores, want_scores)  # bit for bit: the oracle's sum order
            assert entries == int(np.sum(doc_offsets[candidates + 1] - doc_offsets[candidates]))
        assert np.all(positions == ABSENT)


def test_register_query_refuses_duplicates_and_too_many_terms_leaving_the_table_clean():
    positions = new_query_positions(70_000)
    with pytest.raises(ValueError, match="duplicate term"):
        register_query(np.array([4, 9, 4], np.int32), np.ones(3, np.float32), np.float32(1), 70_000, positions)
    assert np.all(positions == ABSENT)
    many = np.arange(MAX_QUERY_TERMS + 1, dtype=np.int32)
    with pytest.raises(ValueError, match="at most 65,534 distinct terms"):
        register_query(many, np.ones(len(many), np.float32), np.float32(1), 70_000, positions)
    assert np.all(positions == ABSENT)
    terms, raw, weights, count = register_query(many[:-1], np.ones(len(many) - 1, np.float32), np.float32(0.5),
                                                70_000, positions)
    assert count == MAX_QUERY_TERMS and positions[MAX_QUERY_TERMS - 1] == MAX_QUERY_TERMS - 1
    assert weights[0] == np.float32(0.5) and raw[0] == 1
    clear_query(terms, count, positions)
    assert np.all(positions == ABSENT)
