"""`exact-blocked` with intra-query threads (option `threads`, engine.scorers.intra_query): bit for bit the
oracle's answer (ids, float32 scores, order, postings count) for 1-4 threads on the shared differential test's
random, heavy-tailed and tie-heavy collections, at k = 1, 10, 1000 and k > documents, with masks of every
selectivity, walking the uint32 document numbers and the 16-bit `blocked_exact` part alike. Also: the setting is
the default and the cap, the option's limits, how shares are cut, and how the pool runs them."""
from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from engine.errors import InvalidQueryError
from engine.index_format import add_parts, open_index
from engine.kernels.blocked_exact import prepare_ranges, share_bounds
from engine.scorers import BlockedExactScorer, intra_query
from engine.snapshot import ServedIndex
from engine.topk import merge_sorted_top_k
from index_builder.csr_index import build_index_from_csr
from tests.engine.kernel_collections import invert
from tests.engine.test_scorer_differential import SEEDS, _masks, _queries
from tests.support.oracle import brute_force_top_k, random_collection, tie_heavy_collection, zipf_collection

RANGE_SIZE = 1024
NUM_DOCUMENTS = 4500  # five ranges of 1,024 (the last one ragged): room for four shares
KS = (1, 10, 1000, NUM_DOCUMENTS + 7)
THREADS = (1, 2, 3, 4)
QUERIES = 12


@pytest.fixture(autouse=True)
def four_threads_allowed():
    intra_query.configure(max(THREADS))
    yield
    intra_query.configure(1)  # the process default, for the tests that follow


def _collection(kind: str, rng):
    if kind == "random":
        return random_collection(rng, NUM_DOCUMENTS, 400, 0.02)
    if kind == "heavy-tailed":
        return zipf_collection(rng, NUM_DOCUMENTS, 1500, 40)
    return tie_heavy_collection(rng, NUM_DOCUMENTS, 60, 6)


@pytest.fixture(scope="module", params=["random", "heavy-tailed", "tie-heavy"])
def case(request, tmp_path_factory):
    """(plain index dir, the same index with the 16-bit part, queries) of one kind of collection."""
    rng = np.random.default_rng(SEEDS[request.param])
    matrix = _collection(request.param, rng)
    root = tmp_path_factory.mktemp(f"threads-{request.param}")
    build_index_from_csr(root / "plain", matrix.indptr, matrix.indices, matrix.data, vocab_size=matrix.shape[1])
    shutil.copytree(root / "plain", root / "part")
    add_parts(root / "part", BlockedExactScorer.part_writers())
    return root / "plain", root / "part", _queries(request.param, rng, matrix.shape[1])[:QUERIES]


def test_every_thread_count_returns_the_oracles_answer(case):
    plain_dir, part_dir, queries = case
    indexes = [open_index(plain_dir), open_index(part_dir)]
    scorers = [BlockedExactScorer(index, RANGE_SIZE) for index in indexes]
    assert [s.doc_numbers.dtype for s in scorers] == [np.uint32, np.uint16] and scorers[0].num_ranges == 5
    index = indexes[0]
    for allowed in _masks(index.num_documents):
        for k in KS:
            for query in queries:
                want_docs, want_scores = brute_force_top_k(index.offsets, index.doc_numbers, index.impacts,
                                                           query.term_ids, query.weights, index.scale, k,
                                                           index.num_documents, allowed)
                for scorer in scorers:
                    scratch = scorer.new_scratch()
                    one = scorer.search(query, k, scratch, {"threads": 1}, allowed)
                    for threads in THREADS:
                        top = scorer.search(query, k, scratch, {"threads": threads}, allowed)
                        where = f"threads={threads} k={k} {scorer.doc_numbers.dtype} mask={allowed is not None}"
                        assert top.doc_numbers.tolist() == want_docs.tolist(), where
                        assert top.scores.tobytes() == want_scores.astype(np.float32).tobytes(), where
                        assert top.stats["postings_traversed"] == one.stats["postings_traversed"], where
                        shares = top.stats.get("range_shares", 1)
                        assert 1 <= shares <= threads, where
                        if allowed is None:  # no mask, so no selection path: really split
                            assert (shares >= 2) == (threads >= 2), where
                    assert len(scratch) <= max(THREADS) and not any(a.any() for a in scratch), \
                        "every accumulator must be left all zeros"


def test_shares_are_contiguous_non_empty_and_balanced_by_postings():
    rng = np.random.default_rng(11)
    num_documents, vocab = 10 * RANGE_SIZE, 30
    # Every posting of term 0 in the first range; the other terms spread over all documents.
    doc_of = np.concatenate([rng.integers(0, RANGE_SIZE, 5000), rng.integers(0, num_documents, 20000)])
    term_of = np.concatenate([np.zeros(5000, np.int64), rng.integers(1, vocab, 20000)])
    keys = np.unique(doc_of * vocab + term_of)
    offsets, doc_numbers, _ = invert(keys // vocab, keys % vocab, np.ones(keys.size), vocab)
    ranges = prepare_ranges(offsets, doc_numbers, num_documents, RANGE_SIZE)
    for term_ids, shares in [(np.arange(vocab), 4), (np.arange(1, vocab), 5), (np.array([], np.int32), 3),
                             (np.array([0]), 4), (np.array([-3, 2, vocab + 9]), 2), (np.arange(vocab), 50)]:
        bounds = share_bounds(ranges, term_ids, shares)
        assert bounds[0] == 0 and bounds[-1] == 10 and np.all(np.diff(bounds) > 0), (term_ids, bounds)
        assert len(bounds) - 1 <= min(shares, 10)
    # Term 0's heavy first range is a share of its own; no postings at all: an even cut of the ranges.
    assert share_bounds(ranges, np.array([0, 1]), 2).tolist() == [0, 1, 10]
    assert share_bounds(ranges, np.array([], np.int32), 2).tolist() == [0, 5, 10]
    assert share_bounds(ranges, np.array([0]), 4).tolist() == [0, 1, 10]  # no even cut: the heavy range alone


@pytest.mark.parametrize("seed", range(20))
def test_merging_sorted_lists_equals_sorting_them_all(seed):
    """The share merge against a lexsort of the concatenation, on tie-heavy lists (some empty), k of every size."""
    rng = np.random.default_rng(seed)
    documents = rng.permutation(400)
    parts, start = [], 0
    for size in rng.integers(0, 60, size=int(rng.integers(1, 5))):
        docs = documents[start:start + size].astype(np.int64)
        start += size
        scores = rng.choice(np.array([0.5, 1.0, 1.5], np.float32), size=len(docs))
        order = np.lexsort((docs, -scores))
        parts.append((docs[order], scores[order]))
    all_docs = np.concatenate([d for d, _ in parts])
    all_scores = np.concatenate([s for _, s in parts])
    ranked = np.lexsort((all_docs, -all_scores))
    for k in (1, 7, len(all_docs), len(all_docs) + 5):
        docs, scores = merge_sorted_top_k(parts, k)
        assert docs.tolist() == all_docs[ranked][:k].tolist()
        assert scores.tobytes() == all_scores[ranked][:k].tobytes()
    assert [len(a) for a in merge_sorted_top_k([], 10)] == [0, 0]


def test_the_setting_is_the_default_and_the_cap(case, monkeypatch):
    plain_dir, _, queries = case
    # Bound as the snapshot binds it, with small ranges so that 4,500 documents make five of them.
    monkeypatch.setattr(BlockedExactScorer, "for_index", classmethod(lambda cls, index: cls(index, RANGE_SIZE)))
    served = ServedIndex(open_index(plain_dir))
    query = max(queries, key=len)
    with served.acquire() as snapshot:
        exact, _ = snapshot.search(query, 10, "exact")
        answers = {}
        for cap, asked, shares in [(1, None, 1), (1, 4, 1), (3, None, 3), (3, 2, 2), (3, 64, 3), (4, 1, 1)]:
            intra_query.configure(cap)
            assert snapshot.options("exact-blocked")["threads"] == cap  # the default follows the setting
            options = None if asked is None else {"threads": asked}
            top, _ = snapshot.search(query, 10, "exact-blocked", options)
            assert top.stats.get("range_shares", 1) == shares, (cap, asked)
            answers[(cap, asked)] = (top.doc_numbers.tobytes(), top.scores.tobytes())
        assert set(answers.values()) == {(exact.doc_numbers.tobytes(), exact.scores.tobytes())}
        assert BlockedExactScorer.describe()["options"]["threads"] == {"default": 4, "min": 1, "max": 64}
        for bad in (0, 65, 1.5, "2"):
            with pytest.raises(InvalidQueryError) as caught:
                snapshot.search(query, 10, "exact-blocked", {"threads": bad})
            assert caught.value.field == "scorer_options.threads"


def test_shares_run_on_their_own_threads_concurrently_and_in_order():
    both_running = threading.Barrier(3, timeout=10)  # three shares meet only if they run at the same time
    seen: dict[int, int] = {}

    def share(i: int) -> int:
        seen[i] = threading.get_ident()
        both_running.wait()
        return i * 10

    intra_query.configure(3)
    assert intra_query.run_shares(share, 3) == [0, 10, 20]
    assert seen[0] == threading.get_ident() and len(set(seen.values())) == 3
    assert intra_query.run_shares(lambda i: i + 7, 1) == [7] and intra_query.run_shares(share, 0) == []


def test_a_failing_share_is_raised_after_every_share_has_finished():
    finished: list[int] = []
    release = threading.Event()

    def share(i: int) -> int:
        if i == 1:
            raise RuntimeError("share 1 failed")
        if i == 2:
            release.wait(10)  # still running while share 1 has already failed
        finished.append(i)
        return i

    def first_share_then_release(i: int) -> int:
        if i == 0:
            release.set()
        return share(i)

    intra_query.configure(3)
    with pytest.raises(RuntimeError, match="share 1 failed"):
        intra_query.run_shares(first_share_then_release, 3)
    assert sorted(finished) == [0, 2]


@pytest.mark.parametrize("bad", [0, 65, 2.0, True, None])
def test_the_cap_must_be_an_integer_within_its_limit(bad):
    with pytest.raises(ValueError, match=r"max_threads must be an integer in \[1, 64\]"):
        intra_query.configure(bad)
    assert intra_query.max_threads() == max(THREADS)  # unchanged
