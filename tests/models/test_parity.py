"""ONNX encoders against the PyTorch reference (transformers masked-LM + SPLADE pooling written here in torch)
on 60 varied texts, one by one and in padded batches: pooled weights within 1e-4, same top-k term sets."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from models.runtime import RuntimeOptions, load_document_encoder, load_query_encoder
from tests.models.texts import parity_texts

TEXTS = parity_texts(60)
TOLERANCE = 1e-4
OPTIONS = RuntimeOptions(device="cpu", intra_op_threads=1)


def splade_reference(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
    """The textbook SPLADE max pooling: max over positions of log(1 + relu(logits)), padding masked out."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        weights = torch.log1p(torch.relu(logits)) * attention_mask.unsqueeze(-1)
        return torch.max(weights, dim=1).values.numpy()


@functools.cache
def load_reference(checkpoint):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(str(checkpoint), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(checkpoint))


def top_k_agree(reference: np.ndarray, term_ids: np.ndarray, k: int) -> bool:
    """The encoder's top-k equals the reference's top-k, except for terms tied (within tolerance) at the k-th."""
    k = min(k, int(np.count_nonzero(reference > 0)))
    expected = np.argsort(-reference, kind="stable")[:k]
    if len(term_ids) != k:
        return False
    kth = reference[expected[-1]] if k else 0.0
    differing = set(expected.tolist()) ^ set(term_ids.tolist())
    return all(abs(reference[t] - kth) <= TOLERANCE for t in differing)


def assert_parity(encoder, checkpoint, texts=TEXTS, batch_sizes=(1, 7), k=64) -> dict:
    model, hf_tokenizer = load_reference(checkpoint)
    figures = {"rows": 0, "max_abs_diff": 0.0, "truncated": 0, "padded_batches": 0}
    for size in batch_sizes:
        for start in range(0, len(texts), size):
            chunk = texts[start:start + size]
            expected = hf_tokenizer(chunk, truncation=True, max_length=encoder.max_length, padding=True,
                                    return_tensors="pt")
            batch = encoder.tokenize(chunk)
            np.testing.assert_array_equal(batch.input_ids, expected["input_ids"].numpy())
            np.testing.assert_array_equal(batch.attention_mask, expected["attention_mask"].numpy())
            reference = splade_reference(model, expected["input_ids"], expected["attention_mask"])
            full = encoder.encode_tokenized(batch, max_terms=None)
            pruned = encoder.encode_tokenized(batch, max_terms=k)
            for row, ((ids, weights), (top_ids, _)) in enumerate(zip(full, pruned)):
                assert ids.dtype == np.int32 and weights.dtype == np.float32
                assert np.all(weights > 0), "zero weights must be dropped"
                assert np.all(np.diff(weights) <= 0), "weights must be sorted descending"
                assert len(np.unique(ids)) == len(ids)
                dense = np.zeros(encoder.vocab_size, dtype=np.float32)
                dense[ids] = weights
                diff = float(np.abs(dense - reference[row]).max())
                assert diff <= TOLERANCE, f"text {start + row}: max abs diff {diff}"
                assert top_k_agree(reference[row], top_ids, k), f"text {start + row}: top-{k} sets differ"
                figures["max_abs_diff"] = max(figures["max_abs_diff"], diff)
                figures["rows"] += 1
            figures["padded_batches"] += int((batch.attention_mask == 0).any())
            lengths = [len(hf_tokenizer(t)["input_ids"]) for t in chunk]
            figures["truncated"] += sum(length > encoder.max_length for length in lengths)
    # The variety the acceptance asks for really was exercised.
    assert figures["rows"] == len(texts) * len(batch_sizes) and len(texts) >= 50
    assert figures["truncated"] > 0 and figures["padded_batches"] > 0
    return figures


@pytest.mark.slow
def test_default_model_query_side_matches_pytorch(default_model_dir, default_checkpoint_dir):
    encoder = load_query_encoder(default_model_dir, OPTIONS)
    assert encoder.max_length == 64
    assert_parity(encoder, default_checkpoint_dir)


@pytest.mark.slow
def test_default_model_document_side_matches_pytorch(default_model_dir, default_checkpoint_dir):
    encoder = load_document_encoder(default_model_dir, OPTIONS)
    assert encoder.max_length == 256
    assert_parity(encoder, default_checkpoint_dir, batch_sizes=(7,))


@pytest.mark.slow
def test_100k_vocabulary_model_matches_pytorch(large_vocab_export):
    query_encoder = load_query_encoder(large_vocab_export.artifact, OPTIONS)
    doc_encoder = load_document_encoder(large_vocab_export.artifact, OPTIONS)
    assert_parity(query_encoder, large_vocab_export.doc_checkpoint)
    assert_parity(doc_encoder, large_vocab_export.doc_checkpoint, batch_sizes=(7,))
    for encoder in (query_encoder, doc_encoder):
        assert encoder.vocab_size == 100_000
        # Ids above 30522 are really produced, so nothing assumes a BERT-base vocabulary.
        ids = np.concatenate([ids for ids, _ in encoder.encode(TEXTS[:10], max_terms=None)])
        assert ids.max() >= 30522


@pytest.mark.slow
def test_separate_encoders_match_their_own_pytorch_models(separate_export):
    query_encoder = load_query_encoder(separate_export.artifact, OPTIONS)
    doc_encoder = load_document_encoder(separate_export.artifact, OPTIONS)
    assert_parity(query_encoder, separate_export.query_checkpoint)
    assert_parity(doc_encoder, separate_export.doc_checkpoint, batch_sizes=(7,))
    # The two sides are different models: swapping them would be caught.
    query_side = query_encoder.encode(["what is the index"], max_terms=None)[0]
    doc_side = doc_encoder.encode(["what is the index"], max_terms=None)[0]
    assert not (len(query_side[0]) == len(doc_side[0]) and np.allclose(query_side[1], doc_side[1]))


def test_inference_free_query_is_the_weight_table_lookup(inference_free_export):
    """Reference: the tokenized query's distinct non-special tokens, each weighing what idf.json says."""
    from transformers import AutoTokenizer

    encoder = load_query_encoder(inference_free_export.artifact)
    assert encoder.provider == "lookup"
    hf_tokenizer = AutoTokenizer.from_pretrained(str(inference_free_export.doc_checkpoint))
    idf = inference_free_export.extra["idf"]
    special = set(hf_tokenizer.all_special_tokens)
    texts = TEXTS + ["what is the index " + " ".join(list(idf)[4:40])]
    seen_terms = 0
    for size in (1, 7):
        for start in range(0, len(texts), size):
            chunk = texts[start:start + size]
            results = encoder.encode(chunk, max_terms=None)
            for text, (ids, weights) in zip(chunk, results):
                tokens = hf_tokenizer.convert_ids_to_tokens(
                    hf_tokenizer(text, truncation=True, max_length=encoder.max_length)["input_ids"]
                )
                expected = {t: idf[t] for t in set(tokens) - special if idf.get(t, 0.0) > 0}
                got = {encoder.token(i): float(w) for i, w in zip(ids, weights)}
                assert got.keys() == expected.keys()
                for token, weight in expected.items():
                    assert abs(got[token] - weight) <= 1e-6
                assert np.all(np.diff(weights) <= 0)
                seen_terms += len(got)
    assert seen_terms > 0
    pruned = encoder.encode([texts[-1]], max_terms=5)[0]
    full = encoder.encode([texts[-1]], max_terms=None)[0]
    np.testing.assert_array_equal(pruned[0], full[0][:5])


def test_inference_free_document_side_matches_pytorch(inference_free_export):
    encoder = load_document_encoder(inference_free_export.artifact, OPTIONS)
    assert_parity(encoder, inference_free_export.doc_checkpoint, batch_sizes=(1, 7))
