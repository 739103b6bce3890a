"""Graphs over protobuf's 2 GB limit (Qwen3-0.6B in float32 is 2.4 GB) keep their weights in one external
`<graph>.onnx.data` file. Forced here on a small model by lowering the threshold: the artifact lists the data
file, loads, and encodes exactly as the one-file export does."""
from __future__ import annotations

import json

import numpy as np

from models import splade_graph
from models.export import export_artifact
from models.runtime import RuntimeOptions, load_document_encoder, load_query_encoder
from tests.models.builders import tiny_mistral
from tests.models.texts import parity_texts


def test_large_graph_is_saved_with_external_data(tmp_path, monkeypatch):
    checkpoint = tiny_mistral(tmp_path / "checkpoint", seed=41, vocab_size=3_000)
    lengths = {"query_max_length": 16, "doc_max_length": 32}
    export_artifact("siamese", tmp_path / "one_file", model=str(checkpoint), **lengths)
    monkeypatch.setattr(splade_graph, "EXTERNAL_DATA_BYTES", 1)
    manifest = export_artifact("siamese", tmp_path / "external", model=str(checkpoint), int8=True, **lengths)

    external = tmp_path / "external"
    assert (external / "doc.onnx.data").stat().st_size > 3_000 * 32 * 4  # the LM head at least
    assert (external / "doc.onnx").stat().st_size < 200_000  # the graph alone
    assert "doc.onnx.data" in manifest["files"]
    assert json.loads((external / "manifest.json").read_text())["files"] == manifest["files"]
    options = RuntimeOptions(device="cpu", intra_op_threads=1)
    texts = parity_texts(12)
    for load in (load_query_encoder, load_document_encoder):
        expected = load(tmp_path / "one_file", options).encode(texts, max_terms=None)
        got = load(external, options).encode(texts, max_terms=None)
        for (ids_a, w_a), (ids_b, w_b) in zip(expected, got):
            np.testing.assert_array_equal(ids_a, ids_b)
            np.testing.assert_array_equal(w_a, w_b)
    int8 = load_document_encoder(external, RuntimeOptions(device="cpu", intra_op_threads=1, use_int8=True))
    assert all(len(ids) for ids, _ in int8.encode(texts[:3], max_terms=10))
