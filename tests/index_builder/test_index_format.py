"""The on-disk format: round trip, chunked inversion, quantization range, validation errors, atomic replacement."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from engine import index_format
from index_builder.csr_index import build_index_from_csr
from engine.index_format import IndexFormatError, open_index
from engine.inversion import BYTES_PER_BUFFERED_POSTING, ChunkedInverter
from engine.impacts import QuantizationRangeError, plan_quantization, quantize

REPO_ROOT = Path(__file__).resolve().parents[2]


def random_matrix(num_docs=500, vocab=300, density=0.05, seed=0):
    rng = np.random.default_rng(seed)
    matrix = sp.random(num_docs, vocab, density=density, format="csr", random_state=rng, dtype=np.float32)
    matrix.data = (matrix.data * 3 + 1e-3).astype(np.float32)
    return matrix


def test_round_trip_matches_the_matrix(tmp_path):
    matrix = random_matrix()
    ids = [f"doc-{i}" for i in range(matrix.shape[0])]
    documents = [{"title": f"t{i}", "text": f"text é {i}"} for i in range(matrix.shape[0])]
    build_index_from_csr(tmp_path / "index", matrix.indptr, matrix.indices, matrix.data,
                         vocab_size=matrix.shape[1], ids=ids, documents=documents, tokenizer_sha256="abc")
    index = open_index(tmp_path / "index", verify_checksums=True)
    assert (index.num_documents, index.num_postings, index.vocab_size) == (500, matrix.nnz, 300)
    assert index.tokenizer_sha256 == "abc"
    assert index.external_id(42) == "doc-42"
    assert index.document(7) == {"title": "t7", "text": "text é 7"}
    # Term-major postings equal the matrix's columns, documents ascending, weights within half a step.
    csc = matrix.tocsc()
    csc.sort_indices()
    np.testing.assert_array_equal(index.offsets, csc.indptr)
    np.testing.assert_array_equal(index.doc_numbers, csc.indices)
    dequantized = index.impacts.astype(np.float64) * index.scale
    rounded = csc.data >= index.scale / 2  # smaller weights keep the minimum impact 1 instead of 0
    assert np.max(np.abs(dequantized - csc.data)[rounded]) <= index.scale / 2 + 1e-7
    assert np.all(index.impacts[~rounded] == 1)
    assert index.impacts.dtype == np.uint8 and index.impacts.min() >= 1
    assert index.manifest["quantization"]["max_weight"] == pytest.approx(float(matrix.data.max()))


def test_chunked_inversion_equals_single_pass(tmp_path):
    matrix = random_matrix(num_docs=2000, vocab=100, density=0.1, seed=3)
    outs = []
    for name, budget in (("one_run", 1 << 30), ("many_runs", 2000 * BYTES_PER_BUFFERED_POSTING)):
        out = tmp_path / name
        out.mkdir()
        inverter = ChunkedInverter(out / "_runs", 100, memory_budget_bytes=budget)
        for lo in range(0, 2000, 37):  # odd batch sizes so that runs split batches
            hi = min(lo + 37, 2000)
            inverter.add_csr(matrix.indptr[lo:hi + 1] - matrix.indptr[lo],
                             matrix.indices[matrix.indptr[lo]:matrix.indptr[hi]],
                             matrix.data[matrix.indptr[lo]:matrix.indptr[hi]])
        result = inverter.finish(out)
        outs.append((out, result))
    assert outs[0][1].runs == 1 and outs[1][1].runs > 5
    assert not (outs[1][0] / "_runs").exists()
    for name in (index_format.OFFSETS, index_format.DOC_NUMBERS, index_format.IMPACTS):
        np.testing.assert_array_equal(np.load(outs[0][0] / name), np.load(outs[1][0] / name))


def test_merge_streams_a_term_larger_than_a_merge_range(tmp_path):
    # Term 0 is in every document (3,000 postings) and term 1 in most: each has more postings than the
    # smallest budget's range holds (1,024), so the merge streams them run by run; the result must equal the
    # matrix's columns exactly (independent reference: scipy's CSC).
    matrix = random_matrix(num_docs=3000, vocab=50, density=0.05, seed=8).tolil()
    matrix[:, 0] = 0.5
    matrix[::2, 1] = 1.5
    matrix = matrix.tocsr()
    out = tmp_path / "out"
    out.mkdir()
    inverter = ChunkedInverter(out / "_runs", 50, memory_budget_bytes=1)
    for lo in range(0, 3000, 250):
        hi = lo + 250
        start, end = matrix.indptr[lo], matrix.indptr[hi]
        inverter.add_csr(matrix.indptr[lo:hi + 1] - start, matrix.indices[start:end], matrix.data[start:end])
    result = inverter.finish(out, impact_bits=16)
    assert inverter.run_capacity == 1024 and result.runs > 5
    csc = matrix.tocsc()
    csc.sort_indices()
    np.testing.assert_array_equal(np.load(out / index_format.OFFSETS), csc.indptr)
    np.testing.assert_array_equal(np.load(out / index_format.DOC_NUMBERS), csc.indices)
    np.testing.assert_array_equal(np.load(out / index_format.IMPACTS), quantize(csc.data, result.quantization))


def test_uint16_impacts_and_explicit_range_check(tmp_path):
    matrix = random_matrix(seed=5)
    build_index_from_csr(tmp_path / "index", matrix.indptr, matrix.indices, matrix.data,
                         vocab_size=matrix.shape[1], impact_bits=16)
    index = open_index(tmp_path / "index")
    assert index.impacts.dtype == np.uint16
    csc = matrix.tocsc()
    csc.sort_indices()
    assert np.max(np.abs(index.impacts * index.scale - csc.data)) <= index.scale / 2 + 1e-7  # no clamping at 16 bits
    plan = plan_quantization(max_weight=2.0, bits=8)
    assert quantize(np.array([2.0, 1e-6], np.float32), plan).tolist() == [255, 1]
    with pytest.raises(QuantizationRangeError, match="above the uint8 limit 255"):
        quantize(np.array([2.1], np.float32), plan)  # never wraps to a small impact
    with pytest.raises(ValueError, match="impact bits"):
        plan_quantization(1.0, bits=12)


@pytest.fixture()
def built_index(tmp_path):
    matrix = random_matrix(seed=9)
    build_index_from_csr(tmp_path / "index", matrix.indptr, matrix.indices, matrix.data,
                         vocab_size=matrix.shape[1], documents=[{"title": "", "text": "x"}] * matrix.shape[0])
    return tmp_path / "index"


@pytest.mark.parametrize("name", ["impacts.npy", "doc_numbers.npy", "offsets.npy", "ids.bin", "documents.offsets.npy"])
def test_truncated_file_is_a_clear_error_naming_it(built_index, name):
    path = built_index / name
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 3)
    with pytest.raises(IndexFormatError, match=rf"{name}: size \d+ bytes, manifest says \d+ \(truncated"):
        open_index(built_index)


def test_missing_and_corrupted_files(built_index, tmp_path):
    with pytest.raises(IndexFormatError, match="not an index directory"):
        open_index(tmp_path / "nowhere")
    # A flipped byte keeps the size: only the explicit checksum verification sees it.
    path = built_index / "doc_numbers.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    open_index(built_index)
    with pytest.raises(IndexFormatError, match="doc_numbers.npy: sha256 does not match"):
        open_index(built_index, verify_checksums=True)
    (built_index / "ids.bin").unlink()
    with pytest.raises(IndexFormatError, match="ids.bin: missing"):
        open_index(built_index)
    manifest = json.loads((built_index / "manifest.json").read_text())
    manifest["format_version"] = 99
    (built_index / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="format_version 99 is not the supported version"):
        open_index(built_index)
    (built_index / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="manifest.json: not valid JSON"):
        open_index(built_index)


def test_failed_build_keeps_the_previous_index(built_index):
    before = open_index(built_index).manifest["files"]
    matrix = random_matrix(seed=1)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        build_index_from_csr(built_index, matrix.indptr, matrix.indices, matrix.data, vocab_size=10)
    assert open_index(built_index, verify_checksums=True).manifest["files"] == before
    assert not list(built_index.parent.glob(".index.staging-*"))


def test_rebuild_replaces_the_index(built_index):
    matrix = random_matrix(num_docs=123, seed=2)
    build_index_from_csr(built_index, matrix.indptr, matrix.indices, matrix.data, vocab_size=matrix.shape[1])
    assert open_index(built_index, verify_checksums=True).num_documents == 123


KILLED_BUILD = textwrap.dedent("""
    import sys
    import numpy as np
    from index_builder.csr_index import build_index_from_csr
    docs, terms = 400_000, 60  # 24M postings: several seconds of work even on a fast machine
    indptr = np.arange(docs + 1, dtype=np.int64) * terms
    term_ids = ((np.arange(docs)[:, None] * 7 + np.arange(terms)[None, :] * 500) % 30_000).ravel()
    weights = np.random.default_rng(0).random(docs * terms, dtype=np.float32) + 0.01
    # A small memory budget: many inversion runs written to the staging directory.
    build_index_from_csr(sys.argv[1], indptr, term_ids, weights, vocab_size=30_000, memory_budget_mb=4)
""")


def test_killed_build_leaves_the_previous_index_loadable(built_index):
    before = open_index(built_index).manifest["files"]
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(built_index)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # Kill once the build has written at least one inversion run into its staging directory.
        while not list(built_index.parent.glob(".index.staging-*/_runs/run-*")):
            assert proc.poll() is None, f"build ended before it could be killed: {proc.communicate()}"
            assert time.monotonic() < deadline, "the build never started writing"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert list(built_index.parent.glob(".index.staging-*")), "the killed build's staging dir is left behind"
    index = open_index(built_index, verify_checksums=True)
    assert index.manifest["files"] == before
    # The next build of the same target removes the dead build's staging directory.
    matrix = random_matrix(num_docs=50, seed=4)
    build_index_from_csr(built_index, matrix.indptr, matrix.indices, matrix.data, vocab_size=matrix.shape[1])
    assert open_index(built_index).num_documents == 50
    assert not list(built_index.parent.glob(".index.staging-*"))


def test_refuses_to_replace_a_directory_that_is_not_an_index(tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    matrix = random_matrix(num_docs=10, seed=6)
    with pytest.raises(IndexFormatError, match="refusing to replace .*notes: it is a non-empty directory without manifest.json"):
        build_index_from_csr(precious, matrix.indptr, matrix.indices, matrix.data, vocab_size=matrix.shape[1])
    assert (precious / "thesis.txt").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    build_index_from_csr(empty, matrix.indptr, matrix.indices, matrix.data, vocab_size=matrix.shape[1])
    assert open_index(empty).num_documents == 10
