"""The exported ONNX graphs follow the contract in docs/design.md, and the manifest records what export did."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest

from models.artifact import sha256_file
from models.runtime import RuntimeOptions, load_document_encoder, load_query_encoder
from tests.models.texts import parity_texts


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", ["query.onnx", "doc.onnx"])
def test_graph_inputs_and_outputs(default_model_dir, name):
    graph = onnx.load(str(default_model_dir / name), load_external_data=False).graph
    inputs = {i.name: i for i in graph.input}
    assert list(inputs) == ["input_ids", "attention_mask", "top_k"]
    for key in ("input_ids", "attention_mask"):
        assert inputs[key].type.tensor_type.elem_type == onnx.TensorProto.INT64
        batch, seq = dims(inputs[key])
        assert isinstance(batch, str) and isinstance(seq, str), "batch and sequence axes must be dynamic"
    assert inputs["top_k"].type.tensor_type.elem_type == onnx.TensorProto.INT64 and dims(inputs["top_k"]) == []
    assert [o.name for o in graph.output] == ["term_ids", "weights"]
    # Graph version 3 emits int32 term ids (as the index and the API use); an artifact exported by version 2
    # still emits TopK's int64 until fetch-default re-exports it, and the runtime reads both.
    graph_version = json.loads((default_model_dir / "manifest.json").read_text()).get("graph_version")
    expected_ids = onnx.TensorProto.INT32 if graph_version >= 3 else onnx.TensorProto.INT64
    assert graph.output[0].type.tensor_type.elem_type == expected_ids
    assert graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ops = [node.op_type for node in graph.node]
    assert "TopK" in ops and "ReduceMax" in ops


def test_raw_session_output_is_sorted_and_k_is_an_input(default_model_dir):
    session = onnxruntime.InferenceSession(str(default_model_dir / "doc.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([[101, 7592, 2088, 102, 0, 0], [101, 2054, 2003, 1996, 3007, 102]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    for k in (3, 50, 30522):
        term_ids, weights = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                               "top_k": np.array(k, dtype=np.int64)})
        assert term_ids.shape == weights.shape == (2, k)
        assert np.all(np.diff(weights, axis=1) <= 0)
        assert np.all(weights >= 0)  # relu inside the graph: no negative weights ever


def test_padding_does_not_change_a_text_weights(default_model_dir):
    """Masked positions never win the max: a text alone and padded inside a batch give the same vector."""
    encoder = load_document_encoder(default_model_dir, RuntimeOptions(device="cpu", intra_op_threads=1))
    short, long = "sparse retrieval", "a much longer text about learned sparse retrieval with inverted indexes " * 4
    alone = encoder.encode([short], max_terms=None)[0]
    padded = encoder.encode([short, long], max_terms=None)[0]
    assert set(alone[0].tolist()) == set(padded[0].tolist())
    np.testing.assert_allclose(np.sort(alone[1]), np.sort(padded[1]), atol=1e-5)


def test_manifest_records_files_and_parity(default_model_dir):
    manifest = json.loads((default_model_dir / "manifest.json").read_text())
    for key in ("format_version", "kind", "source", "vocab_size", "tokenizer_sha256", "max_length", "opset",
                "files", "parity", "created_at"):
        assert key in manifest, key
    assert set(manifest["files"]) >= {"query.onnx", "doc.onnx", "tokenizer.json"}
    for name, digest in manifest["files"].items():
        assert sha256_file(default_model_dir / name) == digest
    for side in ("query", "document"):
        assert manifest["parity"][side]["max_abs_diff"] <= 1e-4
        assert manifest["parity"][side]["top64_sets_agree"] == 1.0


def test_int8_variant_records_its_loss_and_runs(large_vocab_export):
    manifest = json.loads((large_vocab_export.artifact / "manifest.json").read_text())
    for name in ("query.int8.onnx", "doc.int8.onnx"):
        figures = manifest["quantization"][name]
        assert figures["bytes_int8"] < figures["bytes_fp32"] / 2
        assert 0.0 <= figures["top10_overlap"] <= 1.0 and figures["max_abs_diff"] > 0
        assert manifest["files"][name] == sha256_file(large_vocab_export.artifact / name)
    options = RuntimeOptions(device="cpu", intra_op_threads=1, use_int8=True)
    int8 = load_query_encoder(large_vocab_export.artifact, options)
    fp32 = load_query_encoder(large_vocab_export.artifact, RuntimeOptions(device="cpu", intra_op_threads=1))
    assert int8.onnx_path.name == "query.int8.onnx"
    texts = parity_texts(20)
    overlaps = []
    for (ids_q, w_q), (ids_f, _) in zip(int8.encode(texts, max_terms=10), fp32.encode(texts, max_terms=10)):
        assert np.all(w_q > 0)
        overlaps.append(len(set(ids_q.tolist()) & set(ids_f.tolist())) / max(1, len(ids_f)))
    # Quantization perturbs weights but keeps most of the head of each vector.
    assert np.mean(overlaps) >= 0.5


def test_manifest_vocab_comes_from_the_config(large_vocab_export):
    manifest = json.loads((large_vocab_export.artifact / "manifest.json").read_text())
    assert manifest["vocab_size"] == 100_000
    assert manifest["max_length"] == {"query": 16, "document": 32}
    assert manifest["max_position_embeddings"] == 64

