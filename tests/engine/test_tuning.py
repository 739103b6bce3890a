"""Automatic tuning: the chosen configuration's recall, re-measured on other queries, meets the target within a
stated tolerance; an unreachable target is an error naming the best recall found; the CLI records the result
as a named configuration that becomes the index's default and is served by name."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine import scorers
from engine.errors import IndexFormatError
from engine.index_format import add_parts, open_index
from engine.query import SparseQuery
from engine.scorers import ClusteredScorer, PrunedRescoreScorer
from engine.scorers.pruned import parse_tiers
from engine.tuning import TuningError, config_name, exact_top, measure, tune
from index_builder.csr_index import build_index_from_csr
from tests.conftest import run_module
from tests.support.oracle import zipf_collection

# Held-out recall may fall short of the target chosen on other queries by sampling noise: with 150 queries per
# half and per-query recalls in [0, 1], 0.02 is a little over two standard errors of the mean here.
TOLERANCE = 0.02


def queries_for(rng, vocab: int, count: int) -> list[SparseQuery]:
    popularity = 1.0 / np.arange(1, vocab + 1) ** 0.8
    out = []
    for _ in range(count):
        terms = np.unique(rng.choice(vocab, size=40, p=popularity / popularity.sum()))
        weights = rng.lognormal(0.0, 0.6, size=len(terms))
        order = np.lexsort((terms, -weights))
        out.append(SparseQuery(terms[order].astype(np.int32), weights[order].astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def pruned_index(tmp_path_factory):
    rng = np.random.default_rng(21)
    matrix = zipf_collection(rng, 6000, 1500, 40)
    out = tmp_path_factory.mktemp("tuning") / "index"
    build_index_from_csr(out, matrix.indptr, matrix.indices, matrix.data, vocab_size=matrix.shape[1])
    add_parts(out, PrunedRescoreScorer.part_writers({"n_postings": 400}))  # real static pruning at this size
    return out, matrix.shape[1]


def test_the_choice_holds_on_held_out_queries(pruned_index):
    out, vocab = pruned_index
    index = open_index(out)
    rng = np.random.default_rng(3)
    tuning, held_out, fresh = (queries_for(rng, vocab, 150) for _ in range(3))
    config, measured = tune(index, PrunedRescoreScorer, tuning, held_out, k=10, target_recall=0.95)
    grid = len(PrunedRescoreScorer.tuning_grid())
    # The grid, then its best passing choice with postings caps (pruned-rescore has a work cap too).
    assert grid < len(measured) <= grid + 4
    assert all(set(m.options) == {"query_mass", "candidates", "max_postings"} for m in measured[grid:])
    assert config.scorer == "pruned-rescore" and config.k == 10 and config.queries == 150
    assert config.measured_recall >= 0.95 - TOLERANCE
    chosen = next(m for m in measured if m.options == config.options)
    assert chosen.recall >= 0.95
    # Fastest that passed: nothing passing was faster on the tuning half.
    assert all(m.mean_ms >= chosen.mean_ms for m in measured if m.recall >= 0.95)
    # And on a third set of queries it was never chosen or checked on.
    again = measure(PrunedRescoreScorer.for_index(index), fresh, exact_top(index, fresh, 10), 10, config.options)
    assert again.recall >= 0.95 - TOLERANCE


def test_a_tiered_part_tunes_the_tier_cut_too_and_the_choice_holds(tmp_path):
    rng = np.random.default_rng(4)
    matrix = zipf_collection(rng, 6000, 1500, 40)
    out = tmp_path / "index"
    build_index_from_csr(out, matrix.indptr, matrix.indices, matrix.data, vocab_size=matrix.shape[1])
    add_parts(out, PrunedRescoreScorer.part_writers({"n_postings": 400, "tiers": "100,200"}))
    index = open_index(out)
    assert index.parts["pruned_rescore"].params["tier_count"] == 3
    assert index.parts["pruned_rescore"].params["tiers"] == [100, 200]
    grid = PrunedRescoreScorer.tuning_grid(index)
    assert {options["tier_cut"] for options in grid} == {0.3, 0.1, 0.0}
    assert len(grid) == 3 * len(PrunedRescoreScorer.tuning_grid())  # an index of one tier: no tier cut
    tuning, held_out = (queries_for(rng, matrix.shape[1], 80) for _ in range(2))
    config, measured = tune(index, PrunedRescoreScorer, tuning, held_out, k=10, target_recall=0.95)
    assert "tier_cut" in config.options
    assert config.measured_recall >= 0.95 - 0.03  # 80 queries a half: a wider margin than TOLERANCE
    # A cut walks no more postings than the whole lists under the same other knobs.
    work = {m.options["tier_cut"]: np.mean(m.work) for m in measured[:len(grid)]
            if m.options["query_mass"] == 1.0 and m.options["candidates"] == 300}
    assert work[0.3] <= work[0.1] <= work[0.0] and work[0.3] < work[0.0]
    assert parse_tiers(200) == (200,) and parse_tiers("100,200") == (100, 200) and parse_tiers("") == ()
    for tiers, fragment in (("abc", "tiers must be comma-separated"), ("50,20", "tiers must be positive")):
        with pytest.raises(ValueError, match=fragment):
            PrunedRescoreScorer.part_writers({"n_postings": 400, "tiers": tiers})


def test_a_work_cap_is_tried_on_top_of_the_choice_and_kept_only_if_it_holds_the_target(pruned_index):
    out, vocab = pruned_index
    add_parts(out, ClusteredScorer.part_writers({"n_postings": 400}))
    index = open_index(out)
    rng = np.random.default_rng(5)
    tuning, held_out = (queries_for(rng, vocab, 100) for _ in range(2))
    config, measured = tune(index, ClusteredScorer, tuning, held_out, k=10, target_recall=0.95)
    grid = len(ClusteredScorer.tuning_grid())
    uncapped = measured[:grid]
    best = min((m for m in uncapped if m.recall >= 0.95), key=lambda m: m.mean_ms)
    # Caps at quantiles of the work the best uncapped choice did, on top of its options.
    caps = measured[grid:]
    assert caps and all(m.options.keys() == {*best.options, "max_documents"} for m in caps)
    assert {m.options["max_documents"] for m in caps} == {
        int(np.quantile(best.work, q)) for q in (0.5, 0.75, 0.9, 0.95)} - {0}
    assert all(len(m.work) == len(tuning) and max(m.work) <= m.options["max_documents"] - 1 + 4 for m in caps)
    chosen = next(m for m in measured if m.options == config.options)
    assert chosen.recall >= 0.95 and chosen.mean_ms <= best.mean_ms
    assert config.measured_recall >= 0.95 - TOLERANCE


def test_an_unreachable_target_names_the_best_recall(pruned_index):
    out, vocab = pruned_index
    index = open_index(out)
    rng = np.random.default_rng(4)
    tuning, held_out = queries_for(rng, vocab, 40), queries_for(rng, vocab, 40)

    class Weak(PrunedRescoreScorer):
        @classmethod
        def tuning_grid(cls, index=None):
            return [{"query_cut": 1, "candidates": 10}, {"query_cut": 2, "candidates": 20}]

    with pytest.raises(TuningError, match=r"no configuration of 'pruned-rescore' reaches recall@10 0.999 .*"
                                          r"the best found is 0\.\d+ with \{'query_cut': \d+"):
        tune(index, Weak, tuning, held_out, k=10, target_recall=0.999)
    with pytest.raises(TuningError, match="is exact: there is nothing to tune"):
        tune(index, scorers.ExactScorer, tuning, held_out, k=10, target_recall=0.9)


def test_config_names_say_what_they_achieve():
    assert config_name(0.99, 10) == "recall99_k10"
    assert config_name(0.995, 1000) == "recall995_k1000"
    assert config_name(0.9, 100) == "recall9_k100"


def test_cli_tunes_records_and_the_config_is_served(small_index_dir, default_model_dir, scifact_dir, tmp_path):
    import shutil

    index = tmp_path / "index"
    shutil.copytree(small_index_dir, index)
    run_module("index_builder", "add-parts", "--index", str(index), "--scorer", "pruned-rescore",
               "--param", "n_postings=64")
    proc = run_module("index_builder", "tune", "--index", str(index), "--model", str(default_model_dir),
                      "--queries", str(scifact_dir), "--scorer", "pruned-rescore", "--k", "10",
                      "--target-recall", "0.9", "--sample", "200")
    assert "recorded recall9_k10" in proc.stdout, proc.stdout
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["default_scorer"] == "recall9_k10"
    config = manifest["configs"]["recall9_k10"]
    assert config["scorer"] == "pruned-rescore" and config["measured_recall"] >= 0.9 - TOLERANCE
    opened = open_index(index, verify_checksums=True)
    assert "recall9_k10" in scorers.choices(opened)
    # An unknown scorer is a clear CLI error, not a traceback.
    import subprocess
    import sys
    bad = subprocess.run([sys.executable, "-m", "index_builder", "tune", "--index", str(index), "--model",
                          str(default_model_dir), "--queries", str(scifact_dir), "--scorer", "nope"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--scorer: unknown scorer: 'nope'" in bad.stderr, bad.stderr


def test_add_parts_rejects_a_negative_thread_count_and_an_index_the_part_cannot_serve(small_index_dir, tmp_path):
    import subprocess
    import sys
    bad = subprocess.run([sys.executable, "-m", "index_builder", "add-parts", "--index", str(small_index_dir),
                          "--scorer", "clustered", "--threads", "-1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--threads must be >= 0" in bad.stderr, bad.stderr
    # Lists only where the scorer takes one (pruned-rescore's tiers), and only numbers in them.
    for scorer, param, fragment in (("clustered", "n_postings=1,2", "--param n_postings: one number expected"),
                                    ("pruned-rescore", "tiers=10,x", "tiers: '10,x' is not a number or a list"),
                                    ("pruned-rescore", "tiers=50,20", "tiers must be positive, ascending")):
        bad = subprocess.run([sys.executable, "-m", "index_builder", "add-parts", "--index", str(small_index_dir),
                              "--scorer", scorer, "--param", param], capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2 and fragment in bad.stderr, bad.stderr
    # A forward index stores 16-bit term ids: a larger vocabulary is a clear error naming the limit.
    import scipy.sparse as sp
    matrix = sp.random(50, 40, density=0.2, format="csr", random_state=0, dtype=np.float32)
    huge_vocabulary = tmp_path / "huge_vocabulary"
    build_index_from_csr(huge_vocabulary, matrix.indptr, matrix.indices, matrix.data, vocab_size=70000)
    bad = subprocess.run([sys.executable, "-m", "index_builder", "add-parts", "--index", str(huge_vocabulary),
                          "--scorer", "pruned-rescore"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "the vocabulary has 70000 terms" in bad.stderr, bad.stderr
    assert "at most 65536" in bad.stderr
    # Both approximate parts keep a uint16 index's impacts.
    wide = tmp_path / "wide"
    build_index_from_csr(wide, matrix.indptr, matrix.indices, matrix.data, vocab_size=40, impact_bits=16)
    run_module("index_builder", "add-parts", "--index", str(wide), "--scorer", "pruned-rescore")
    run_module("index_builder", "add-parts", "--index", str(wide), "--scorer", "clustered", "--threads", "0")
    assert scorers.registered()["clustered"].for_index(open_index(wide)).arrays.forward_impacts.dtype == np.uint16
    pruned = scorers.registered()["pruned-rescore"].for_index(open_index(wide)).arrays
    assert pruned.pruned_impacts.dtype == np.uint16 and pruned.forward_impacts.dtype == np.uint16
    # A part written in an older layout is refused with what to do, not misread.
    manifest_path = wide / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for old_version in (1, 2, 3, 4):
        manifest["parts"]["clustered"]["version"] = old_version
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(IndexFormatError,
                           match=f"layout version {old_version}; this engine reads version 5: rebuild it"):
            scorers.registered()["clustered"].for_index(open_index(wide))
    manifest["parts"]["clustered"]["version"] = 5
    for old_version in (1, 2):  # uint32 documents and no ranges; one tier
        manifest["parts"]["pruned_rescore"]["version"] = old_version
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(IndexFormatError,
                           match=f"layout version {old_version}; this engine reads version 3: rebuild it"):
            scorers.registered()["pruned-rescore"].for_index(open_index(wide))


@pytest.mark.parametrize("value, fragment", [(-1, "must be in [0, 100000000], got -1"),
                                             (100_000_001, "must be in [0, 100000000]"),
                                             (2.5, "must be an integer, got 2.5")])
def test_max_documents_outside_its_limits_names_the_field(value, fragment):
    from engine.errors import InvalidQueryError
    with pytest.raises(InvalidQueryError) as caught:
        ClusteredScorer.resolve_options({"max_documents": value})
    assert caught.value.field == "scorer_options.max_documents" and fragment in caught.value.message
    assert ClusteredScorer.resolve_options({"max_documents": 4000})["max_documents"] == 4000
    assert ClusteredScorer.resolve_options({})["max_documents"] == 0  # no cap unless asked or tuned


def test_pruned_rescore_options_outside_their_limits_name_the_field():
    from engine.errors import InvalidQueryError
    for options, field, fragment in (({"max_postings": -1}, "max_postings", "must be in [0, 1099511627776]"),
                                     ({"query_mass": 0}, "query_mass", "must be in [0.01, 1.0]"),
                                     ({"query_mass": 1.5}, "query_mass", "must be in [0.01, 1.0]"),
                                     ({"range_quota": -0.5}, "range_quota", "must be in [0.0, 1000.0]"),
                                     ({"tier_cut": 1.5}, "tier_cut", "must be in [0.0, 1.0]")):
        with pytest.raises(InvalidQueryError) as caught:
            PrunedRescoreScorer.resolve_options(options)
        assert caught.value.field == f"scorer_options.{field}" and fragment in caught.value.message, caught.value
    resolved = PrunedRescoreScorer.resolve_options({})
    assert resolved["max_postings"] == 0 and resolved["query_mass"] == 0.8  # no cap unless asked or tuned
    assert resolved["range_quota"] == 3.0 and resolved["tier_cut"] == 0.2
    assert PrunedRescoreScorer.work_cap == ("max_postings", "postings_traversed")
