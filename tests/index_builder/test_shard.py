"""`python -m index_builder shard`: document-range shards that together rank exactly as the whole index (ids,
float32 scores and the tie rule), each recording its range in its manifest; bad input is a clear CLI error."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from engine import ServedIndex, SparseQuery, open_index
from index_builder.shard import open_shards, shard_bounds, split_index
from splade_ray.merge import merge_top_k
from splade_ray.shard_search import ShardSearcher
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def three_shards(small_index_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "small.shards-3"
    return out, split_index(small_index_dir, out, 3)


def test_bounds_cover_every_document_once():
    assert shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(5, 1) == [(0, 5)]
    with pytest.raises(ValueError, match="--shards 6 exceeds the 5 documents"):
        shard_bounds(5, 6)
    with pytest.raises(ValueError, match="--shards must be >= 1"):
        shard_bounds(5, 0)


def test_each_shard_is_an_index_recording_its_range(three_shards, small_index_dir):
    out, layout = three_shards
    whole = open_index(small_index_dir)
    assert open_shards(out) == layout and layout["count"] == 3 and layout["partition"] == "range"
    postings = 0
    for entry in layout["shards"]:
        shard = open_index(out / entry["dir"], verify_checksums=True)
        recorded = shard.manifest["shard"]
        assert recorded["first_document"] == entry["first_document"] and recorded["count"] == 3
        assert recorded["total_documents"] == whole.num_documents == 300
        assert shard.scale == whole.scale and shard.parts == {}
        first = entry["first_document"]
        assert shard.external_ids(np.arange(shard.num_documents)) == \
            whole.external_ids(np.arange(first, first + shard.num_documents))
        assert shard.document(0) == whole.document(first)
        postings += shard.num_postings
    assert postings == whole.num_postings


def test_merged_shard_top_k_equals_the_whole_index(three_shards, small_index_dir):
    """Random queries and a tie-heavy one (every weight 1 on the most common terms: many equal scores)."""
    out, layout = three_shards
    whole = ServedIndex(open_index(small_index_dir))
    shards = [ShardSearcher.from_path(out / entry["dir"]) for entry in layout["shards"]]
    lengths = np.diff(np.asarray(whole.current.index.offsets))
    rng = np.random.default_rng(13)
    queries = []
    for _ in range(40):
        terms = rng.choice(np.flatnonzero(lengths), size=int(rng.integers(1, 40)), replace=False)
        weights = np.sort(rng.random(len(terms)).astype(np.float32))[::-1] + np.float32(0.01)
        queries.append(SparseQuery(terms.astype(np.int32), weights))
    common = np.argsort(lengths)[::-1][:2].astype(np.int32)
    queries.append(SparseQuery(common, np.ones(2, np.float32)))
    ties = 0
    for query in queries:
        for k in (1, 10, 100):
            with whole.acquire() as snapshot:
                expected, _ = snapshot.search(query, k)
            merged = merge_top_k([s.search(query.term_ids, query.weights, k)[0] for s in shards], k)
            assert [h.global_doc for h in merged] == expected.doc_numbers.tolist()
            assert [h.score for h in merged] == expected.scores.tolist()
            ties += len(expected.scores) - len(set(expected.scores.tolist()))
    assert ties > 0, "the tie-heavy query should produce equal scores, or the tie rule is untested"


def test_cli_splits_and_refuses_bad_counts(small_index_dir, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "index_builder", "shard", *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300)

    ok = run("--index", str(small_index_dir), "--shards", "2", "--out", str(tmp_path / "two"))
    assert ok.returncode == 0, ok.stderr
    assert "wrote 2 shards" in ok.stdout and "150, 150" in ok.stdout
    assert json.loads((tmp_path / "two" / "shards.json").read_text())["count"] == 2
    bad = run("--index", str(small_index_dir), "--shards", "301", "--out", str(tmp_path / "many"))
    assert bad.returncode == 2 and "--shards 301 exceeds the 300 documents" in bad.stderr
    assert not (tmp_path / "many").exists()


def test_a_segmented_index_is_refused_rather_than_split_in_part(tmp_path):
    """Its top-level files are only its first segment: splitting them would drop every later write."""
    from engine.commit import COMMIT
    from engine.errors import IndexFormatError
    from engine.lifecycle import IndexWriter, NewDocument
    from index_builder.csr_index import build_index_from_csr


    build_index_from_csr(tmp_path / "index", np.array([0, 2, 3]), np.array([1, 2, 3], np.int32),
                         np.array([1.0, 2.0, 0.5], np.float32), vocab_size=10, ids=["a", "b"])
    with IndexWriter(tmp_path / "index") as writer:
        writer.add([NewDocument("c", np.array([4], np.int32), np.array([1.0], np.float32))])
        writer.commit()
    assert (tmp_path / "index" / COMMIT).exists()
    with pytest.raises(IndexFormatError, match="segmented index"):
        split_index(tmp_path / "index", tmp_path / "shards", 2)
