"""A Ray Data build (`map_batches` over an encoder class, two encoder actors) of a small corpus equals the
single-machine build file for file (postings, impacts, ids, document store, BM25 field), and its shards equal the
split of the single-machine build."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.index_format import MANIFEST, read_manifest
from index_builder.build import EncodeSettings
from index_builder.shard import split_index
from splade_ray.data_build import ray_build
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DOCUMENTS = 80
BATCH_SIZE = 2  # windows of 32 documents: three windows, spread over the two actors


def data_files(directory):
    """{file name: sha256} of an index directory, as its manifest records them (every data file)."""
    return {name: entry.sha256 for name, entry in read_manifest(directory).files.items()}


def test_ray_data_build_equals_the_single_machine_build(ray_cluster, small_corpus, default_model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    with open(small_corpus, encoding="utf-8") as src:
        corpus.write_text("".join(line for _, line in zip(range(DOCUMENTS), src)), encoding="utf-8")
    single = tmp_path / "single"
    proc = subprocess.run([sys.executable, "-m", "index_builder", "build", "--model", str(default_model_dir),
                           "--corpus", str(corpus), "--out", str(single), "--batch-size", str(BATCH_SIZE),
                           "--doc-max-terms", "128", "--no-progress"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr

    from index_builder.bm25_part import Bm25PartBuilder

    settings = EncodeSettings(doc_max_terms=128, batch_size=BATCH_SIZE, progress=False)
    manifest, layout = ray_build(corpus, tmp_path / "ray", default_model_dir, settings, 2, bm25=Bm25PartBuilder(),
                                 concurrency=2, encoder_cpus=0.25)
    assert manifest["counts"]["documents"] == DOCUMENTS and manifest["corpus"]["format"] == "vectors"
    assert data_files(tmp_path / "ray") == data_files(single)
    single_manifest = json.loads((single / MANIFEST).read_text())
    assert manifest["quantization"] == single_manifest["quantization"]
    assert manifest["counts"] == single_manifest["counts"]

    reference = split_index(single, tmp_path / "single.shards-2", 2)
    assert [e["documents"] for e in layout["shards"]] == [e["documents"] for e in reference["shards"]] == [40, 40]
    for ours, theirs in zip(layout["shards"], reference["shards"]):
        assert data_files(tmp_path / "ray.shards-2" / ours["dir"]) == \
            data_files(tmp_path / "single.shards-2" / theirs["dir"])
