"""Decoder-LM SPLADE encoders (tiny random Mistral, 32,000 terms, and Qwen3, 151,936 terms; causal, echo and
bidirectional) against a PyTorch reference written here: each text alone, no padding, transformers'
*ForCausalLM, the SPLADE head in plain torch. The encoders run the exported graphs on padded batches (right
padding for Mistral, left for Qwen3): pooled weights within 1e-4, identical top-k term sets."""
from __future__ import annotations

import functools
import json

import numpy as np
import onnx
import pytest
import torch

from models.runtime import RuntimeOptions, load_document_encoder, load_query_encoder
from tests.models.conftest import DECODER_VARIANTS
from tests.models.texts import parity_texts

TEXTS = parity_texts(40)  # 60 for the BERT models; the 151,936-term references cost more
TOLERANCE = 1e-4
OPTIONS = RuntimeOptions(device="cpu", intra_op_threads=1)


@functools.cache
def load_reference(checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(str(checkpoint))


_REFERENCE_CACHE: dict = {}


def splade_reference(model, token_ids: list[int], settings: dict) -> np.ndarray:
    """(cached: the query side sees the same texts alone and in batches)"""
    key = (id(model), tuple(token_ids), tuple(sorted(settings.items())))
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[key] = _splade_reference(model, token_ids, settings)
    return _REFERENCE_CACHE[key]


def _splade_reference(model, token_ids: list[int], settings: dict) -> np.ndarray:
    """One text, no padding. Echo: the tokens twice, pooled over the second copy. Bidirectional: a 4-D mask
    of zeros (every token sees every token). Weights: max over pooled positions of log1p(relu(scale * logits))."""
    vocab = model.get_output_embeddings().out_features
    if not token_ids:
        return np.zeros(vocab, dtype=np.float32)
    sequence = token_ids * 2 if settings["echo"] else token_ids
    ids = torch.tensor([sequence])
    full_attention = torch.zeros(1, 1, len(sequence), len(sequence))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=full_attention if settings["attention"] == "bidirectional"
                       else None, use_cache=False).logits[0]
    pooled = logits[len(token_ids):] if settings["echo"] else logits
    return torch.log1p(torch.relu(settings["logit_scale"] * pooled)).max(dim=0).values.numpy()


def top_k_agree(reference: np.ndarray, term_ids: np.ndarray, k: int) -> bool:
    """The encoder's top-k equals the reference's, except for terms tied (within tolerance) at the k-th."""
    k = min(k, int(np.count_nonzero(reference > 0)))
    if len(term_ids) != k:
        return False
    if k == 0:
        return True
    expected = np.argpartition(-reference, k - 1)[:k]  # a full sort of 151,936 terms per row adds up
    kth = reference[expected].min()
    return all(abs(reference[t] - kth) <= TOLERANCE for t in set(expected.tolist()) ^ set(term_ids.tolist()))


def assert_decoder_parity(encoder, checkpoint, settings, batch_sizes, k=64) -> dict:
    model, hf_tokenizer = load_reference(checkpoint)
    assert hf_tokenizer.padding_side == settings["padding_side"]
    figures = {"rows": 0, "max_abs_diff": 0.0, "padded_batches": 0, "truncated": 0, "max_term_id": 0}
    for size in batch_sizes:
        for start in range(0, len(TEXTS), size):
            chunk = TEXTS[start:start + size]
            if hf_tokenizer.pad_token is None:  # Mistral: no pad token; any id pads, the mask hides it
                hf_tokenizer.pad_token = hf_tokenizer.eos_token
            expected = hf_tokenizer(chunk, truncation=True, max_length=encoder.max_length, padding=True,
                                    return_tensors="np")
            batch = encoder.tokenize(chunk)
            real = batch.attention_mask.astype(bool)
            if expected["input_ids"].shape[1]:  # (a lone text without tokens: we keep one padding column)
                np.testing.assert_array_equal(batch.attention_mask, expected["attention_mask"])
                np.testing.assert_array_equal(batch.input_ids[real], expected["input_ids"][real])
            # Padding on the tokenizer's side: the mask only rises (left) or only falls (right) along a row.
            steps = np.diff(batch.attention_mask, axis=1)
            assert np.all(steps >= 0) if settings["padding_side"] == "left" else np.all(steps <= 0)
            full = encoder.encode_tokenized(batch, max_terms=None)
            pruned = encoder.encode_tokenized(batch, max_terms=k)
            for row, ((ids, weights), (top_ids, _)) in enumerate(zip(full, pruned)):
                reference = splade_reference(model, batch.input_ids[row][real[row]].tolist(), settings)
                assert ids.dtype == np.int32 and weights.dtype == np.float32
                assert np.all(weights > 0) and np.all(np.diff(weights) <= 0)
                dense = np.zeros(encoder.vocab_size, dtype=np.float32)
                dense[ids] = weights
                diff = float(np.abs(dense - reference).max())
                assert diff <= TOLERANCE, f"text {start + row}: max abs diff {diff}"
                assert top_k_agree(reference, top_ids, k), f"text {start + row}: top-{k} sets differ"
                figures["max_abs_diff"] = max(figures["max_abs_diff"], diff)
                figures["max_term_id"] = max(figures["max_term_id"], int(ids.max()) if len(ids) else 0)
                figures["rows"] += 1
            figures["padded_batches"] += int((batch.attention_mask == 0).any())
            figures["truncated"] += sum(len(hf_tokenizer(t)["input_ids"]) > encoder.max_length for t in chunk)
    # The variety asked for really was exercised: padding in batches, truncated long texts.
    assert figures["rows"] == len(TEXTS) * len(batch_sizes)
    assert figures["padded_batches"] > 0 and figures["truncated"] > 0
    return figures


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(DECODER_VARIANTS))
def test_decoder_encoder_matches_pytorch(decoder_exports, variant):
    exported = decoder_exports(variant)
    settings = exported.extra["expected"]
    manifest = json.loads((exported.artifact / "manifest.json").read_text())
    assert manifest["source"]["document"]["encoder"] == {"backbone": "causal-lm", **settings}
    for side in ("query", "document"):
        assert manifest["parity"][side]["max_abs_diff"] <= TOLERANCE
        assert manifest["parity"][side]["top64_sets_agree"] == 1.0

    query_encoder = load_query_encoder(exported.artifact, OPTIONS)
    doc_encoder = load_document_encoder(exported.artifact, OPTIONS)
    query = assert_decoder_parity(query_encoder, exported.doc_checkpoint, settings, batch_sizes=(1, 7))
    doc = assert_decoder_parity(doc_encoder, exported.doc_checkpoint, settings, batch_sizes=(7,))
    vocab = 151_936 if variant.startswith("qwen3") else 32_000
    assert manifest["vocab_size"] == query_encoder.vocab_size == vocab
    if vocab > 65_536:
        # Term ids above 16 bits really come out of the graph, as int32.
        assert max(query["max_term_id"], doc["max_term_id"]) > 65_535


def test_decoder_graph_outputs_int32_term_ids(decoder_exports):
    exported = decoder_exports("qwen3-causal")
    graph = onnx.load(str(exported.artifact / "doc.onnx"), load_external_data=False).graph
    assert [o.name for o in graph.output] == ["term_ids", "weights"]
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "top_k"]


def test_echo_limits_the_input_to_half_the_positions(decoder_exports):
    """Echo feeds each token twice: the manifest's input limit is half the model's 128 positions."""
    echo = json.loads((decoder_exports("qwen3-echo").artifact / "manifest.json").read_text())
    plain = json.loads((decoder_exports("qwen3-causal").artifact / "manifest.json").read_text())
    assert echo["max_position_embeddings"] == 64 and plain["max_position_embeddings"] == 128
    with pytest.raises(ValueError, match="position limit of 64"):
        load_document_encoder(decoder_exports("qwen3-echo").artifact, OPTIONS, max_length=65)


def test_padding_side_does_not_change_a_text_weights(decoder_exports):
    """Left-padded (Qwen3) and right-padded (Mistral) batches: a text alone and inside a batch weigh the same."""
    for variant in ("qwen3-causal", "mistral-echo"):
        encoder = load_document_encoder(decoder_exports(variant).artifact, OPTIONS)
        short, long = "sparse retrieval", "a much longer text about learned sparse retrieval with indexes " * 3
        alone = encoder.encode([short], max_terms=None)[0]
        padded = encoder.encode([long, short, ""], max_terms=None)
        np.testing.assert_array_equal(np.sort(alone[0]), np.sort(padded[1][0]))
        np.testing.assert_allclose(np.sort(alone[1]), np.sort(padded[1][1]), atol=1e-5)
        if variant.startswith("qwen3"):
            assert len(padded[2][0]) == 0, "a text without tokens (no BOS added) weighs nothing"
