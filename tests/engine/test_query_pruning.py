"""engine.query_pruning: the weight-mass and weight-ratio rules keep a prefix, and a pruned search is exactly the
exact scorer's answer for the kept terms (mass 1 / ratio 0: the unpruned answer)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidQueryError
from engine.query import SparseQuery
from engine.query_pruning import check, mass_prefix, prune, ratio_prefix
from engine.searcher import SearchOptions


@pytest.fixture(scope="module")
def searcher(small_index_dir, default_model_dir):
    from engine import Searcher
    from models.runtime import RuntimeOptions

    return Searcher.from_paths(small_index_dir, default_model_dir, RuntimeOptions(device="cpu", intra_op_threads=1))


def query(weights) -> SparseQuery:
    return SparseQuery(np.arange(len(weights), dtype=np.int32), np.array(weights, np.float32))


def test_rules_on_a_known_query():
    q = query([4, 3, 2, 1, 0.5])  # total 10.5
    assert len(prune(q, mass=1.0)) == 5 and len(prune(q, mass=0.5)) == 2 and len(prune(q, mass=0.67)) == 3
    assert len(prune(q, ratio=0.0)) == 5 and len(prune(q, ratio=0.5)) == 3 and len(prune(q, ratio=1.0)) == 1
    assert len(prune(q, mass=0.9, ratio=0.3)) == 3  # both: the shorter prefix
    assert prune(q) is q and len(prune(SparseQuery.empty(), 0.5, 0.5)) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.001, 100), min_size=1, max_size=64), st.floats(0.01, 1.0), st.floats(0.0, 1.0))
def test_kept_terms_meet_the_rule_and_no_shorter_prefix_does(weights, mass, ratio):
    w = np.sort(np.array(weights, np.float32))[::-1]
    n = mass_prefix(w, mass)
    total = float(np.sum(w, dtype=np.float64))
    assert 1 <= n <= len(w)
    assert float(np.sum(w[:n], dtype=np.float64)) >= mass * total * (1 - 1e-9)
    assert n == 1 or float(np.sum(w[:n - 1], dtype=np.float64)) < mass * total
    r = ratio_prefix(w, ratio)
    assert np.all(w[:r] >= ratio * w[0]) and np.all(w[r:] < ratio * w[0])


@pytest.mark.parametrize("mass, ratio, field_name", [
    (0.2, None, "query_weight_mass"), (0.0, None, "query_weight_mass"), (float("nan"), None, "query_weight_mass"),
    (None, 0.8, "query_weight_ratio"), (None, -0.1, "query_weight_ratio"),
])
def test_limits_name_the_field(mass, ratio, field_name):
    with pytest.raises(InvalidQueryError) as info:
        check(mass, ratio, min_mass=0.5, max_ratio=0.5)
    assert info.value.field == field_name


@pytest.mark.parametrize("mass, ratio", [(1.0, None), (None, 0.0), (0.7, None), (None, 0.2), (0.8, 0.1)])
def test_pruned_search_is_the_exact_answer_for_the_kept_terms(searcher, mass, ratio):
    text = "Vitamin D deficiency increases the risk of cardiovascular disease"
    with searcher.acquire() as snapshot:
        full = searcher.encode_texts([text]).queries[0]
        kept = prune(full, mass, ratio)
        got = searcher.score_mode(snapshot, full, text, SearchOptions(k=20, query_weight_mass=mass,
                                                                    query_weight_ratio=ratio))
        want = searcher.score(snapshot, SparseQuery(full.term_ids[:len(kept)], full.weights[:len(kept)]),
                              SearchOptions(k=20))
    assert [(h.id, h.score) for h in got.hits] == [(h.id, h.score) for h in want.hits]
    if mass == 1.0 or ratio == 0.0:
        assert len(kept) == len(full)
    else:
        assert len(kept) < len(full)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.6])
def test_two_phase_rescores_with_the_exact_scorers_arithmetic(searcher, ratio):
    from engine.two_phase import candidates, forward_of

    text = "T cells regulate the immune response to tumours"
    with searcher.acquire() as snapshot:
        full = searcher.encode_texts([text]).queries[0]
        got = searcher.score_mode(snapshot, full, text, SearchOptions(k=10, two_phase_ratio=ratio))
        exact = searcher.score(snapshot, full, SearchOptions(k=snapshot.index.num_documents))
        forward = forward_of(snapshot.index)
        assert forward.offsets[-1] == snapshot.index.num_postings
    every = {h.id: h.score for h in exact.hits}
    # Every returned hit carries its exact full-query score, bit for bit, best first.
    assert [h.score for h in got.hits] == [every[h.id] for h in got.hits]
    assert [h.score for h in got.hits] == sorted((h.score for h in got.hits), reverse=True)
    assert got.stats["two_phase_candidates"] == candidates(10, 300)
    if ratio == 0.0:  # phase 1 is the full query: exactly the exact top-k
        assert [(h.id, h.score) for h in got.hits] == [(h.id, h.score) for h in exact.hits[:10]]
    else:
        assert got.stats["two_phase_terms"] < len(full)
