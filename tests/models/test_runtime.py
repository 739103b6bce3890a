"""The runtime encoders' behaviour on the default model: pruning, zero filtering, memory-bounded batches,
thread safety, length overrides and clear errors for bad input."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from models.errors import ArtifactError
from models.runtime import RuntimeOptions, load_document_encoder, load_query_encoder
from tests.models.texts import parity_texts

OPTIONS = RuntimeOptions(device="cpu", intra_op_threads=1)
TEXTS = parity_texts(24)


@pytest.fixture(scope="module")
def query_encoder(default_model_dir):
    return load_query_encoder(default_model_dir, OPTIONS)


@pytest.fixture(scope="module")
def doc_encoder(default_model_dir):
    return load_document_encoder(default_model_dir, OPTIONS)


def test_facts_come_from_the_manifest(query_encoder, doc_encoder, default_model_dir):
    manifest = json.loads((default_model_dir / "manifest.json").read_text())
    tokenizer_sha = hashlib.sha256((default_model_dir / "tokenizer.json").read_bytes()).hexdigest()
    for encoder in (query_encoder, doc_encoder):
        assert encoder.vocab_size == manifest["vocab_size"]
        assert encoder.tokenizer_sha256 == manifest["tokenizer_sha256"] == tokenizer_sha
        assert encoder.provider == "CPUExecutionProvider"
        assert encoder.manifest == manifest
    assert query_encoder.max_length == manifest["max_length"]["query"]
    assert doc_encoder.max_length == manifest["max_length"]["document"]


def test_no_pruning_returns_every_non_zero_term(query_encoder):
    batch = query_encoder.tokenize(TEXTS)
    unpruned = query_encoder.encode_tokenized(batch, max_terms=None)
    whole_vocab = query_encoder.encode_tokenized(batch, max_terms=query_encoder.vocab_size)
    beyond_vocab = query_encoder.encode_tokenized(batch, max_terms=10 * query_encoder.vocab_size)
    for (ids, weights), (ids_v, weights_v), (ids_b, _) in zip(unpruned, whole_vocab, beyond_vocab):
        assert len(ids) > 0 and np.all(weights > 0)
        np.testing.assert_array_equal(ids, ids_v)
        np.testing.assert_array_equal(ids, ids_b)
        np.testing.assert_array_equal(weights, weights_v)
    # SPLADE output is sparse: far fewer terms than the vocabulary.
    assert max(len(ids) for ids, _ in unpruned) < query_encoder.vocab_size // 10


def test_pruned_output_is_the_head_of_the_full_output(query_encoder):
    for k in (1, 5, 32):
        for (ids, weights), (top_ids, top_weights) in zip(query_encoder.encode(TEXTS, None),
                                                           query_encoder.encode(TEXTS, k)):
            assert len(top_ids) == min(k, len(ids))
            np.testing.assert_allclose(top_weights, weights[:len(top_ids)], rtol=0, atol=1e-6)
            assert np.all(np.diff(top_weights) <= 0)


def test_memory_budget_splits_batches_without_changing_results(default_model_dir, doc_encoder):
    # 256 tokens x 30522 terms x 4 bytes = 31 MB per row: a 40 MB budget allows one row per call.
    tight = load_document_encoder(default_model_dir, RuntimeOptions(device="cpu", intra_op_threads=1,
                                                                     max_logits_bytes=40 * 2**20))
    assert tight.rows_per_call(256) == 1
    assert doc_encoder.rows_per_call(256) * 256 * doc_encoder.vocab_size * 4 <= OPTIONS.max_logits_bytes
    assert doc_encoder.rows_per_call(256) > 1
    long_texts = [" ".join([text] * 30) for text in TEXTS[:6]] + TEXTS[:3]
    expected = doc_encoder.encode(long_texts, max_terms=64)
    for (ids, weights), (ids_t, weights_t) in zip(expected, tight.encode(long_texts, max_terms=64)):
        np.testing.assert_allclose(weights_t, weights, atol=1e-5)
        assert len(set(ids.tolist()) ^ set(ids_t.tolist())) <= 2  # ties at the 64th weight only


def test_concurrent_calls_give_the_sequential_results(query_encoder):
    expected = query_encoder.encode(TEXTS, max_terms=None)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda text: query_encoder.encode([text], max_terms=None)[0], TEXTS * 3))
    for (ids, weights), (ids_e, weights_e) in zip(results, expected * 3):
        assert set(ids.tolist()) == set(ids_e.tolist())
        np.testing.assert_allclose(np.sort(weights), np.sort(weights_e), atol=1e-5)


def test_empty_input_gives_no_vectors(query_encoder):
    assert query_encoder.encode([], max_terms=10) == []
    assert len(query_encoder.tokenize([])) == 0


def test_max_length_override_truncates_there(default_model_dir):
    encoder = load_query_encoder(default_model_dir, OPTIONS, max_length=16)
    assert encoder.max_length == 16
    assert encoder.tokenize(["word " * 100]).input_ids.shape == (1, 16)
    with pytest.raises(ValueError, match="exceeds the model's position limit of 512"):
        load_document_encoder(default_model_dir, OPTIONS, max_length=1000)
    with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
        load_query_encoder(default_model_dir, OPTIONS, max_length=1)


@pytest.mark.parametrize("max_terms", [0, -3, 2.5, True, "10"])
def test_bad_max_terms_is_a_clear_error(query_encoder, max_terms):
    with pytest.raises(ValueError, match="max_terms must be a positive integer or None"):
        query_encoder.encode(["hello"], max_terms=max_terms)


def test_non_string_texts_are_rejected_with_their_position(query_encoder):
    with pytest.raises(TypeError, match=r"texts\[1\] must be a string"):
        query_encoder.encode(["fine", None])
    with pytest.raises(TypeError, match="not a single string"):
        query_encoder.tokenize("a bare string")


def test_token_lookups(query_encoder):
    term_id = query_encoder.token_id("python")
    assert term_id is not None and query_encoder.token(term_id) == "python"
    assert query_encoder.token_id("definitely-not-a-token-xyz") is None
    with pytest.raises(ValueError, match="outside the vocabulary"):
        query_encoder.token(query_encoder.vocab_size)


def test_missing_or_invalid_artifacts_are_clear_errors(tmp_path, default_model_dir):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_query_encoder(tmp_path / "missing")
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_query_encoder(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(default_model_dir, copy)
    with pytest.raises(ArtifactError, match="use_int8 needs an artifact exported with --int8"):
        load_query_encoder(copy, RuntimeOptions(device="cpu", use_int8=True))
    with open(copy / "tokenizer.json", "a", encoding="utf-8") as handle:
        handle.write(" ")
    with pytest.raises(ArtifactError, match="does not match the manifest's tokenizer_sha256"):
        load_query_encoder(copy, OPTIONS)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_document_encoder(copy, OPTIONS)


def test_runtime_never_imports_torch_or_transformers(default_model_dir):
    code = (
        "import sys\n"
        "from models.runtime import load_query_encoder, load_document_encoder, RuntimeOptions\n"
        f"q = load_query_encoder({str(default_model_dir)!r}, RuntimeOptions(device='cpu'))\n"
        f"d = load_document_encoder({str(default_model_dir)!r}, RuntimeOptions(device='cpu'))\n"
        "assert q.encode(['hello world'], 8)[0][0].size > 0\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
