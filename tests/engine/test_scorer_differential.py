"""Every registered scorer against the one oracle (tests/support/oracle.py), on random, heavy-tailed and
tie-heavy collections: a safe scorer must return exactly the oracle's top-k (ids and float32 scores, ties to the
lower document number); an approximate one must meet the recall floor it declares, with exact scores for the
documents it returns. The same holds with an allowed-document mask of every selectivity (the oracle applied to
the allowed documents), and every scorer then returns k hits whenever k allowed documents score above 0. A
deliberately wrong scorer of each kind (and one that filters after the search) shows that the check can fail."""
from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from engine import scorers
from engine.errors import IndexFormatError
from engine.index_format import add_parts, open_index
from engine.query import SparseQuery
from engine.scorers import PrunedRescoreScorer
from engine.scorers.base import Scorer, TopK
from engine.scorers.exact import ExactScorer
from index_builder.csr_index import build_index_from_csr
from tests.support.oracle import brute_force_top_k, random_collection, tie_heavy_collection, zipf_collection

KS = (1, 10, 100)
QUERIES_PER_CASE = 40
# Shares of the documents a mask allows: a handful (the selection path), a few percent, half, all.
MASK_SHARES = (0.003, 0.05, 0.5, 1.0)
SEEDS = {"random": 1, "heavy-tailed": 2, "tie-heavy": 3, "random-uint16": 4}


def _collection(kind: str, rng):
    if kind.startswith("random"):
        return random_collection(rng, 3000, 400, 0.02)
    if kind == "heavy-tailed":
        return zipf_collection(rng, 3000, 1500, 40)
    return tie_heavy_collection(rng, 3000, 60, 6)


def _queries(kind: str, rng, vocab: int) -> list[SparseQuery]:
    queries = []
    for _ in range(QUERIES_PER_CASE):
        size = int(rng.integers(0, 40))
        if kind == "heavy-tailed":
            popularity = 1.0 / np.arange(1, vocab + 1) ** 0.8
            terms = np.unique(rng.choice(vocab, size=size, p=popularity / popularity.sum()))
        else:
            terms = np.unique(rng.integers(0, vocab, size=size))
        weights = (rng.choice([0.5, 1.0], size=len(terms)) if kind == "tie-heavy"
                   else rng.lognormal(0.0, 0.5, size=len(terms)))
        order = np.lexsort((terms, -weights))
        queries.append(SparseQuery(terms[order].astype(np.int32), weights[order].astype(np.float32)))
    return queries


@pytest.fixture(scope="module", params=["random", "heavy-tailed", "tie-heavy", "random-uint16"])
def case(request, tmp_path_factory):
    rng = np.random.default_rng(SEEDS[request.param])
    matrix = _collection(request.param, rng)
    out = tmp_path_factory.mktemp(request.param) / "index"
    build_index_from_csr(out, matrix.indptr, matrix.indices, matrix.data, vocab_size=matrix.shape[1],
                         impact_bits=16 if request.param.endswith("uint16") else 8)
    return request.param, out, _queries(request.param, rng, matrix.shape[1])


def _masks(num_documents: int) -> list[np.ndarray | None]:
    rng = np.random.default_rng(7)
    return [None] + [rng.random(num_documents) < share for share in MASK_SHARES]


def check_against_oracle(scorer_cls: type[Scorer], index_dir, queries: list[SparseQuery],
                         part_params: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Raise AssertionError unless `scorer_cls` keeps its declared promise on these queries, without a mask and
    with masks of every selectivity; its parts are built with `part_params` (None: the defaults)."""
    writers = scorer_cls.part_writers(part_params)
    if writers:
        add_parts(index_dir, writers)
    index = open_index(index_dir)
    scorer = scorer_cls.for_index(index)
    scratch = scorer.new_scratch()
    options = scorer_cls.resolve_options(None)
    recalls: dict[str, list[float]] = {}
    for allowed in _masks(index.num_documents):
        masked = "" if allowed is None else f" (mask allowing {int(allowed.sum())} documents)"
        for k in KS:
            for query in queries:
                top = scorer.search(query, k, scratch, options, allowed)
                want_docs, want_scores = brute_force_top_k(index.offsets, index.doc_numbers, index.impacts,
                                                           query.term_ids, query.weights, index.scale, k,
                                                           index.num_documents, allowed)
                if allowed is not None:
                    assert np.all(allowed[top.doc_numbers]), f"{scorer_cls.name}: returned a masked document"
                    assert len(top.doc_numbers) == len(want_docs), \
                        f"{scorer_cls.name}: {len(top.doc_numbers)} hits where {len(want_docs)} exist{masked}"
                if scorer_cls.safe:
                    assert top.doc_numbers.tolist() == want_docs.tolist(), \
                        f"{scorer_cls.name}: ids differ at k={k}{masked}"
                    assert top.scores.tobytes() == want_scores.astype(np.float32).tobytes(), \
                        f"{scorer_cls.name}: scores differ at k={k}{masked}"
                else:
                    exact = brute_force_top_k(index.offsets, index.doc_numbers, index.impacts, query.term_ids,
                                              query.weights, index.scale, index.num_documents,
                                              index.num_documents)
                    exact_score = dict(zip(exact[0].tolist(), exact[1].tolist()))
                    for doc, score in zip(top.doc_numbers.tolist(), top.scores.tolist()):
                        assert doc in exact_score, f"{scorer_cls.name}: returned document {doc} does not match"
                        assert score == pytest.approx(exact_score[doc], rel=1e-5), \
                            f"{scorer_cls.name}: inexact score"
                    if len(want_docs):
                        recalls.setdefault(masked or "no mask", []).append(len(set(top.doc_numbers.tolist()) & set(want_docs.tolist())) / len(want_docs))
                assert "postings_traversed" in top.stats
    if not scorer_cls.safe:
        measured = {mask: float(np.mean(values)) for mask, values in recalls.items()}
        for mask, recall in measured.items():  # the floor holds with every mask, not just on average
            assert recall >= scorer_cls.recall_floor, \
                f"{scorer_cls.name}: recall {recall:.4f} ({mask}) below its declared floor {scorer_cls.recall_floor}"
        return {"recall": min(measured.values(), default=1.0)}
    return {}


@pytest.mark.parametrize("name", sorted(scorers.registered()))
def test_every_registered_scorer_keeps_its_promise(name, case, tmp_path):
    kind, index_dir, queries = case
    scorer_cls = scorers.registered()[name]
    dtype = open_index(index_dir).impacts.dtype.name
    if dtype not in scorer_cls.impact_dtypes:  # then building its parts is a clear error naming the dtypes
        with pytest.raises(IndexFormatError, match=f"needs {' or '.join(scorer_cls.impact_dtypes)} impacts"):
            check_against_oracle(scorer_cls, index_dir, queries)
        return
    check_against_oracle(scorer_cls, index_dir, queries)


# Postings kept a term for the tiered check: below the longest lists of each collection (random ~60 a term,
# heavy-tailed longer, tie-heavy up to 323; tie-heavy at 60 falls to recall 0.47 with tiers and without them:
# the top 60 of ~300 tied impacts are an arbitrary cut, a limit of static pruning itself).
TIERED_N_POSTINGS = {"random": 50, "random-uint16": 50, "heavy-tailed": 60, "tie-heavy": 200}


def test_pruned_rescore_keeps_its_promise_with_static_pruning_and_impact_tiers(case, tmp_path):
    """At its defaults (100,000 postings a term, tiers from 10,000) these collections' lists are kept whole and
    in one tier: the same promise with static pruning active and three tiers (a quarter, a quarter and a half of
    the kept postings), at the default knobs."""
    kind, index_dir, queries = case
    n = TIERED_N_POSTINGS[kind]
    copy = shutil.copytree(index_dir, tmp_path / "index")  # the module's index keeps its default parts
    check_against_oracle(PrunedRescoreScorer, copy, queries, {"n_postings": n, "tiers": f"{n // 4},{n // 2}"})
    part = open_index(copy).parts["pruned_rescore"].params
    assert part["tier_count"] == 3 and part["kept_postings"] < open_index(copy).num_postings


class _DropsTheLastTerm(ExactScorer):
    """Claims to be safe but ignores the query's lightest term: close, and wrong."""

    name = "wrong-safe"

    def search(self, query: SparseQuery, k: int, scratch: Any, options: Mapping[str, Any],
               allowed: np.ndarray | None = None) -> TopK:
        return super().search(query.keep_heaviest(max(len(query) - 1, 0)), k, scratch, options, allowed)


class _OverclaimsRecall(ExactScorer):
    """Approximate, claims recall 0.9, returns exact scores but only the better half of the top-k (without a
    mask; with one it behaves, so only the floor check can catch it)."""

    name = "wrong-approximate"
    safe = False
    recall_floor = 0.9

    def search(self, query: SparseQuery, k: int, scratch: Any, options: Mapping[str, Any],
               allowed: np.ndarray | None = None) -> TopK:
        top = super().search(query, k, scratch, options, allowed)
        if allowed is not None:
            return top
        half = len(top.doc_numbers) // 2
        return TopK(top.doc_numbers[:half], top.scores[:half], top.stats)


class _PostFilters(ExactScorer):
    """Safe without a mask; with one, searches everything and drops what the mask excludes afterwards, so it
    returns fewer than k hits where k allowed documents exist."""

    name = "wrong-post-filter"

    def search(self, query: SparseQuery, k: int, scratch: Any, options: Mapping[str, Any],
               allowed: np.ndarray | None = None) -> TopK:
        top = super().search(query, k, scratch, options)
        if allowed is None:
            return top
        keep = allowed[top.doc_numbers]
        return TopK(top.doc_numbers[keep], top.scores[keep], top.stats)


@pytest.mark.parametrize("wrong, why", [(_DropsTheLastTerm, "differ"), (_OverclaimsRecall, "below its declared floor"),
                                        (_PostFilters, "hits where")])
def test_the_check_rejects_a_wrong_scorer(wrong, why, case):
    kind, index_dir, queries = case
    with pytest.raises(AssertionError, match=f"{wrong.name}: .*{why}"):
        check_against_oracle(wrong, index_dir, queries)


def test_registration_rules():
    with pytest.raises(ValueError, match="already registered"):
        scorers.register(type("Impostor", (ExactScorer,), {"name": "exact"}))

    class NoFloor(ExactScorer):
        name = "no-floor"
        safe = False

    with pytest.raises(ValueError, match="must declare its recall_floor"):
        scorers.register(NoFloor)
    assert "no-floor" not in scorers.registered()
