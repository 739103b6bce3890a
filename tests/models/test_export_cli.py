"""`python -m models export` end to end for each kind's flags (small checkpoints built in the tests)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from models.runtime import RuntimeOptions, load_document_encoder, load_query_encoder
from tests.models.builders import synthetic_vocab, write_idf
from tests.models.conftest import SMALL_VOCAB


def export(*args):
    proc = subprocess.run([sys.executable, "-m", "models", "export", *args, "--query-max-length", "24",
                           "--doc-max-length", "48"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_cli_exports_separate_and_inference_free(tmp_path, small_doc_checkpoint):
    idf = tmp_path / "idf.json"
    write_idf(idf, synthetic_vocab(SMALL_VOCAB), seed=9, count=200)
    # siamese goes through the same CLI in fetch-default (the default_model_dir fixture).
    runs = {
        "separate": ["--query-model", str(small_doc_checkpoint), "--doc-model", str(small_doc_checkpoint)],
        "inference-free": ["--doc-model", str(small_doc_checkpoint), "--query-weights", str(idf)],
    }
    for kind, flags in runs.items():
        out = tmp_path / kind
        proc = export("--kind", kind, *flags, "--out", str(out))
        assert f"exported kind={kind} vocab={SMALL_VOCAB}" in proc.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["kind"] == kind and manifest["vocab_size"] == SMALL_VOCAB
        expected_files = {"tokenizer.json", "doc.onnx"} | (
            {"query_weights.npy"} if kind == "inference-free" else {"query.onnx"})
        assert set(manifest["files"]) == expected_files
        assert sorted(p.name for p in out.iterdir()) == sorted(expected_files | {"manifest.json"})
        options = RuntimeOptions(device="cpu", intra_op_threads=1)
        query = load_query_encoder(out, options).encode(["what is the index"], max_terms=8)[0]
        doc = load_document_encoder(out, options).encode(["what is the index"], max_terms=8)[0]
        assert len(query[0]) > 0 and len(doc[0]) > 0
