"""The cache-blocked exact scorer against the exact oracle and a brute-force numpy reference: bit for bit
(document numbers AND float32 score bits) on random, heavy-tailed and tie-heavy data, walking the index's uint32
document numbers and their 16-bit local form (the `blocked_exact` part) alike."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.engine.kernel_collections import Collection, brute_force_scores, brute_force_top_k, collection, invert

from engine.kernels.blocked_exact import (COUNTED_SCAN_MAX_K, MIN_RANGE_SIZE, local_doc_numbers, prepare_ranges,
                                          score_blocked, share_bounds)

from engine.kernels.exact import score_exact
from engine.query import SparseQuery
from engine.topk import merge_sorted_top_k


def blocked(c, term_ids, weights, k, range_size=MIN_RANGE_SIZE, ranges=None):
    """The kernel's answer, checked equal across both forms and across ways of cutting the ranges into shares
    (each share walked alone, the answers merged by the tie rule, as threads do)."""
    ranges = prepare_ranges(c.offsets, c.doc_numbers, c.num_documents, range_size) if ranges is None else ranges
    term_ids, weights = np.asarray(term_ids, np.int32), np.asarray(weights, np.float32)
    results = []
    for docs in (c.doc_numbers, local_doc_numbers(c.doc_numbers)):  # both forms, every time
        accumulator = np.zeros(min(range_size, c.num_documents), dtype=np.float32)
        whole = score_blocked(docs, c.impacts, ranges, range_size, c.num_documents, term_ids, weights, c.scale, k,
                              accumulator)
        assert not accumulator.any(), "the accumulator must be left all zeros"
        num_ranges = ranges.shape[1] - 1
        for bounds in (share_bounds(ranges, term_ids, 2), share_bounds(ranges, term_ids, 3),
                       np.arange(num_ranges + 1)):  # balanced shares, and one share a range
            shares = len(bounds) - 1
            # Alone; then sharing k-th bests, the shares in order and in reverse (each sees the others' final
            # ones: the largest bounds, the extremes of what threads running at once see).
            for thresholds, order in ((None, range(shares)), (np.zeros(shares, np.float32), range(shares)),
                                      (np.zeros(shares, np.float32), range(shares - 1, -1, -1))):
                sharing = {} if thresholds is None else {"share_thresholds": thresholds}
                parts = {i: score_blocked(docs, c.impacts, ranges, range_size, c.num_documents, term_ids, weights,
                                          c.scale, k, accumulator, first_range=bounds[i], last_range=bounds[i + 1],
                                          share=i, **sharing) for i in order}
                assert not accumulator.any(), "the accumulator must be left all zeros"
                merged = merge_sorted_top_k([(parts[i][0], parts[i][1]) for i in range(shares)], k)
                assert_bitwise_equal((*merged, sum(part[2] for part in parts.values())), whole)
        results.append(whole)
    assert_bitwise_equal(results[1], results[0])
    return results[0]


def oracle(c, term_ids, weights, k):
    accumulator = np.zeros(c.num_documents, dtype=np.float32)
    return score_exact(c.offsets, c.doc_numbers, c.impacts, np.asarray(term_ids, np.int32),
                       np.asarray(weights, np.float32), c.scale, k, accumulator)


def assert_bitwise_equal(got, expected):
    docs, scores, postings = got
    assert np.array_equal(docs, expected[0])
    assert np.array_equal(np.asarray(scores, np.float32).view(np.uint32),
                          np.asarray(expected[1], np.float32).view(np.uint32))
    if len(expected) > 2:
        assert postings == expected[2]


@pytest.mark.parametrize("kind", ["random", "heavy", "real_like"])
@pytest.mark.parametrize("k", [1, 10, 1000])
def test_equal_to_oracle_and_brute_force(kind, k):
    c = collection(kind, num_documents=5000, num_queries=25, seed=1)
    ranges = prepare_ranges(c.offsets, c.doc_numbers, c.num_documents, MIN_RANGE_SIZE)
    for term_ids, weights in c.queries:
        got = blocked(c, term_ids, weights, k, ranges=ranges)
        assert_bitwise_equal(got, oracle(c, term_ids, weights, k))
        assert_bitwise_equal(got, brute_force_top_k(brute_force_scores(c, term_ids, weights), k))


@st.composite
def small_index(draw):
    """A random inverted index; `ties` draws impacts and weights from tiny sets, so equal scores abound."""
    num_documents = draw(st.integers(1, 4000))
    vocab = draw(st.integers(1, 40))
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    postings = int(rng.integers(0, 6 * num_documents + 1))
    doc_of = rng.integers(0, num_documents, size=postings)
    # Heavy tail: a few terms take most postings.
    term_of = np.minimum(rng.zipf(1.5, size=postings) - 1, vocab - 1)
    keys = np.unique(doc_of * vocab + term_of)
    doc_of, term_of = keys // vocab, keys % vocab
    impacts = rng.integers(1, 3, size=len(keys)) if ties else rng.integers(1, 256, size=len(keys))
    offsets, doc_numbers, impacts = invert(doc_of, term_of, impacts, vocab)
    n_terms = draw(st.integers(0, vocab))
    term_ids = rng.choice(vocab, size=n_terms, replace=False).astype(np.int32)
    weights = (np.ones(n_terms) if ties else rng.lognormal(0, 1, size=n_terms)).astype(np.float32)
    order = np.lexsort((term_ids, -weights))
    return offsets, doc_numbers, impacts, num_documents, term_ids[order], weights[order]


@settings(max_examples=60, deadline=None)
@given(small_index(), st.integers(0, 50), st.sampled_from([1024, 2048, 4096]))
def test_hypothesis_bitwise_equal(data, k, range_size):
    offsets, doc_numbers, impacts, num_documents, term_ids, weights = data

    class C:
        pass
    c = C()
    c.offsets, c.doc_numbers, c.impacts, c.num_documents, c.scale = offsets, doc_numbers, impacts, num_documents, \
        np.float32(0.037)
    c.vocab_size = len(offsets) - 1
    got = blocked(c, term_ids, weights, k, range_size=range_size)
    assert_bitwise_equal(got, oracle(c, term_ids, weights, k))
    assert_bitwise_equal(got, brute_force_top_k(brute_force_scores(c, term_ids, weights), k))


def test_edge_cases():
    c = collection("random", num_documents=3000, seed=2)
    empty_terms = np.flatnonzero(np.diff(c.offsets) == 0)
    # Empty query, k = 0, k > matches, k > N, out-of-vocabulary ids and terms without postings.
    cases = [(np.array([], np.int32), np.array([], np.float32), 10),
             (c.queries[0][0], c.queries[0][1], 0),
             (np.array([3], np.int32), np.array([1.0], np.float32), 10_000),
             (c.queries[1][0], c.queries[1][1], c.num_documents + 5),
             (np.array([-1, 5, c.vocab_size + 7], np.int32), np.array([2.0, 1.0, 0.5], np.float32), 10)]
    if len(empty_terms):
        cases.append((np.array([empty_terms[0], 4], np.int32), np.array([3.0, 1.0], np.float32), 10))
    for term_ids, weights, k in cases:
        got = blocked(c, term_ids, weights, k)
        assert_bitwise_equal(got, oracle(c, term_ids, weights, k))
    docs, scores, postings = blocked(c, np.array([3], np.int32), np.array([1.0], np.float32), 10_000)
    assert len(docs) == c.offsets[4] - c.offsets[3] == postings  # k > matches: every match, no padding
    assert len(blocked(c, np.array([], np.int32), np.array([], np.float32), 10)[0]) == 0


def test_single_range_and_ragged_last_range():
    c = collection("heavy", num_documents=2500, seed=3)  # ranges of 1024: 1024 + 1024 + 452
    for range_size in (1024, 4096):
        for term_ids, weights in c.queries[:10]:
            assert_bitwise_equal(blocked(c, term_ids, weights, 10, range_size=range_size),
                                 oracle(c, term_ids, weights, 10))


def test_shares_keep_the_tie_rule_when_every_score_ties():
    """Every document scores the same, so the top-k is the k lowest document numbers whichever share publishes
    its k-th best first: a later share's k-th best excludes only lower scores, never equal ones."""
    num_documents = 5000  # five ranges of 1,024
    offsets, doc_numbers, impacts = invert(np.arange(num_documents), np.zeros(num_documents, np.int64),
                                           np.full(num_documents, 7), 1)

    class C:
        pass
    c = C()
    c.offsets, c.doc_numbers, c.impacts, c.num_documents, c.scale = offsets, doc_numbers, impacts, num_documents, \
        np.float32(0.05)
    for k in (1, 10, 1000, 3000):
        got = blocked(c, [0], [1.5], k)
        assert got[0].tolist() == list(range(k))
        assert_bitwise_equal(got, oracle(c, [0], [1.5], k))


def test_range_size_limits_are_enforced():
    c = collection("random", num_documents=100, seed=4)
    with pytest.raises(ValueError, match="range_size must be in"):
        prepare_ranges(c.offsets, c.doc_numbers, c.num_documents, 10)


@pytest.mark.parametrize("range_size", [32768, 40000, 65536])
def test_local_doc_numbers_wrap_past_65536_documents(range_size):
    """200,000 documents: the 16-bit local numbers wrap three times, inside ranges and (40,000) across them."""
    rng = np.random.default_rng(5)
    num_documents, vocab = 200_000, 50
    doc_of = rng.integers(0, num_documents, size=400_000)
    term_of = np.minimum(rng.zipf(1.3, size=doc_of.size) - 1, vocab - 1)
    keys = np.unique(doc_of * vocab + term_of)
    offsets, doc_numbers, impacts = invert(keys // vocab, keys % vocab, rng.integers(1, 256, size=keys.size), vocab)

    class C:
        pass
    c = C()
    c.offsets, c.doc_numbers, c.impacts, c.num_documents, c.scale = offsets, doc_numbers, impacts, num_documents, \
        np.float32(0.011)
    local = local_doc_numbers(doc_numbers)
    assert local.dtype == np.uint16 and np.array_equal(local, doc_numbers % 65536)
    for seed in range(6):
        term_ids = np.random.default_rng(seed).choice(vocab, size=12, replace=False).astype(np.int32)
        weights = np.random.default_rng(seed).lognormal(0, 1, size=12).astype(np.float32)
        for k in (10, 1000):
            assert_bitwise_equal(blocked(c, term_ids, weights, k, range_size=range_size),
                                 oracle(c, term_ids, weights, k))


def test_the_scorer_walks_the_16_bit_part_once_the_index_has_it(tmp_path):
    from engine.index_format import add_parts, open_index
    from engine.scorers import BlockedExactScorer, ExactScorer
    from index_builder.csr_index import build_index_from_csr
    from tests.support.oracle import zipf_collection

    matrix = zipf_collection(np.random.default_rng(6), 3000, 800, 30)
    out = tmp_path / "index"
    build_index_from_csr(out, matrix.indptr, matrix.indices, matrix.data, vocab_size=matrix.shape[1])
    assert BlockedExactScorer.for_index(open_index(out)).doc_numbers.dtype == np.uint32  # no part: the index's
    with pytest.raises(ValueError, match="takes no build parameters"):
        BlockedExactScorer.part_writers({"bits": 8})
    add_parts(out, BlockedExactScorer.part_writers())
    index = open_index(out, verify_checksums=True)
    assert index.parts["blocked_exact"].params == {"bits": 16}
    blocked_scorer, exact_scorer = BlockedExactScorer.for_index(index), ExactScorer.for_index(index)
    assert blocked_scorer.doc_numbers.dtype == np.uint16
    assert np.array_equal(blocked_scorer.doc_numbers, index.doc_numbers % 65536)
    scratch, exact_scratch = blocked_scorer.new_scratch(), exact_scorer.new_scratch()
    rng = np.random.default_rng(7)
    for _ in range(20):
        terms = np.unique(rng.integers(0, matrix.shape[1], size=25)).astype(np.int32)
        query = SparseQuery(terms, rng.lognormal(0, 0.5, size=terms.size).astype(np.float32))
        got, want = blocked_scorer.search(query, 10, scratch, {}), exact_scorer.search(query, 10, exact_scratch, {})
        assert got.doc_numbers.tolist() == want.doc_numbers.tolist()
        assert got.scores.tobytes() == want.scores.tobytes()


@pytest.mark.parametrize("k", [1, 10, 512, 513])
def test_the_counted_scan_and_compactions_keep_the_oracle_answer(k):
    """Dense ranges and thousands of positive scores: the key buffer compacts, the bar rises, and from then on
    (k <= COUNTED_SCAN_MAX_K) the scan counts each chunk's passing scores first. Few impact levels make ties
    across chunks and ranges; a filter and shares run the same paths."""
    assert COUNTED_SCAN_MAX_K == 512  # the parametrization straddles it
    rng = np.random.default_rng(k)
    num_documents, vocab = 12_000, 8
    doc_of = np.repeat(np.arange(num_documents), 3)
    term_of = rng.integers(0, vocab, size=len(doc_of))
    keep = np.unique(doc_of * vocab + term_of, return_index=True)[1]
    offsets, docs, impacts = invert(doc_of[keep], term_of[keep], rng.integers(1, 6, size=len(keep)), vocab)
    c = Collection(offsets, docs, impacts, np.float32(0.25), num_documents, [])
    term_ids, weights = np.arange(vocab, dtype=np.int32), np.linspace(2.0, 0.5, vocab).astype(np.float32)
    got = blocked(c, term_ids, weights, k)
    assert_bitwise_equal(got, oracle(c, term_ids, weights, k))
    allowed = rng.random(num_documents) < 0.6
    ranges = prepare_ranges(c.offsets, c.doc_numbers, c.num_documents, MIN_RANGE_SIZE)
    masked = score_blocked(local_doc_numbers(c.doc_numbers), c.impacts, ranges, MIN_RANGE_SIZE, num_documents,
                           term_ids, weights, c.scale, k, np.zeros(MIN_RANGE_SIZE, np.float32), allowed)
    expected = score_exact(c.offsets, c.doc_numbers, c.impacts, term_ids, weights, c.scale, k,
                           np.zeros(num_documents, np.float32), allowed)
    assert_bitwise_equal(masked, expected)
