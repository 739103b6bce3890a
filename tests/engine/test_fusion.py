"""engine.fusion: reciprocal rank fusion, min-max and z-score linear fusion, and their validation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import InvalidQueryError
from engine.fusion import FusionSpec, Ranked, fuse, normalize, parse_weights, ranks_of, retriever_depth


def ranked(docs, scores):
    return Ranked(np.array(docs, np.int64), np.array(scores, np.float32))


LISTS = {"splade": ranked([3, 1, 2], [9.0, 5.0, 1.0]), "bm25": ranked([1, 4], [20.0, 10.0])}


def test_rrf_sums_weighted_reciprocal_ranks():
    docs, scores = fuse(LISTS, FusionSpec("rrf", {"splade": 1.0, "bm25": 2.0}, rank_constant=60), k=10)
    expected = {3: 1 / 61, 1: 1 / 62 + 2 / 61, 2: 1 / 63, 4: 2 / 62}
    assert docs.tolist() == sorted(expected, key=lambda d: -expected[d])
    np.testing.assert_allclose(scores, [expected[d] for d in docs.tolist()])


def test_linear_minmax_gives_missing_documents_the_list_floor():
    docs, scores = fuse(LISTS, FusionSpec("linear", {"splade": 1.0, "bm25": 1.0}, "minmax"), k=10)
    # splade min-max: 3 -> 1, 1 -> 0.5, 2 -> 0; bm25: 1 -> 1, 4 -> 0; absent -> 0.
    expected = {3: 1.0, 1: 1.5, 2: 0.0, 4: 0.0}
    assert docs.tolist() == [1, 3, 2, 4]  # the 0.0 tie goes to the lower document number
    np.testing.assert_allclose(scores, [expected[d] for d in docs.tolist()])


def test_linear_zscore_and_k_cut():
    docs, scores = fuse(LISTS, FusionSpec("linear", {"splade": 1.0, "bm25": 0.0}, "zscore"), k=2)
    z = normalize(np.array([9.0, 5.0, 1.0]), "zscore")
    assert docs.tolist() == [3, 1]
    np.testing.assert_allclose(scores, z[:2])


def test_normalize_constant_lists_and_unknown_method():
    assert normalize(np.array([2.0, 2.0]), "minmax").tolist() == [1.0, 1.0]
    assert normalize(np.array([2.0, 2.0]), "zscore").tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        normalize(np.array([1.0]), "softmax")


def test_empty_lists_fuse_to_nothing():
    docs, scores = fuse({"splade": ranked([], []), "bm25": ranked([], [])}, FusionSpec(), k=5)
    assert len(docs) == 0 and len(scores) == 0


@pytest.mark.parametrize("spec, field_name", [
    (FusionSpec("sum"), "fusion"),
    (FusionSpec(normalization="softmax"), "normalization"),
    (FusionSpec(weights={"splade": -1.0}), "fusion_weights.splade"),
    (FusionSpec(weights={"bm25": math.nan}), "fusion_weights.bm25"),
    (FusionSpec(weights={"bm25": math.inf}), "fusion_weights.bm25"),
    (FusionSpec(weights={"dense": 1.0}), "fusion_weights.dense"),
    (FusionSpec(weights={"splade": 0.0, "bm25": 0.0}), "fusion_weights"),
    (FusionSpec(rank_constant=-1.0), "rank_constant"),
    (FusionSpec(rank_constant=math.inf), "rank_constant"),
])
def test_bad_specs_name_the_field(spec, field_name):
    with pytest.raises(InvalidQueryError) as info:
        spec.checked()
    assert info.value.field == field_name


def test_overrides_keep_unnamed_defaults():
    base = FusionSpec("rrf", {"splade": 1.0, "bm25": 0.5}, "minmax", 60)
    merged = base.with_overrides(method="linear", weights={"bm25": 2.0})
    assert (merged.method, dict(merged.weights), merged.normalization, merged.rank_constant) == (
        "linear", {"splade": 1.0, "bm25": 2.0}, "minmax", 60)


def test_depth_ranks_and_weight_flags():
    assert retriever_depth(10, 5000) == 100 and retriever_depth(1000, 5000) == 2000
    assert retriever_depth(1000, 300) == 300
    assert ranks_of(LISTS["bm25"]) == {1: (1, 20.0), 4: (2, 10.0)}
    assert parse_weights("splade=1, bm25=0.25") == {"splade": 1.0, "bm25": 0.25}
    with pytest.raises(ValueError):
        parse_weights("splade")
