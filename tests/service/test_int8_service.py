"""int8 served through a real `python -m service`: /info shows the int8 graph and its manifest figures, and
the query terms it serves overlap the fp32 service's as much as the manifest says."""
from __future__ import annotations

import json
import shutil

import httpx
import pytest

from models import artifact
from models.parity import PARITY_TEXTS
from tests.support.server import running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOLERANCE = 0.05  # the manifest measures padded batches of 8; the service encodes these texts one by one


@pytest.fixture(scope="module")
def int8_model_dir(tmp_path_factory, default_model_dir):
    """The default artifact plus query.int8.onnx and its figures, made as `export --int8` makes them."""
    from models.export import _add_int8_variants
    from models.tokenization import load_tokenizer

    out = tmp_path_factory.mktemp("int8") / "splade-tiny"
    shutil.copytree(default_model_dir, out, ignore=shutil.ignore_patterns("doc.onnx", "*.int8.onnx"))
    manifest = artifact.read_manifest(out)
    tokenizer = load_tokenizer(out / artifact.TOKENIZER, manifest["max_length"]["query"])
    manifest["quantization"] = _add_int8_variants(out, tokenizer, manifest["vocab_size"], manifest["max_length"])
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return out


def _top_terms(base_url: str, text: str, k: int = 10) -> set[str]:
    response = httpx.post(f"{base_url}/search", json={"query": text, "k": 1, "explain": True}, timeout=30)
    response.raise_for_status()
    ranked = sorted(response.json()["query_terms"], key=lambda pair: -pair[1])  # [token, weight] pairs
    return {token for token, _ in ranked[:k]}


def test_int8_served_overlap_matches_the_manifest_figure(int8_model_dir, live_service, small_index_dir):
    figure = artifact.read_manifest(int8_model_dir)["quantization"]["query.int8.onnx"]["top10_overlap"]
    env = {"SPLADE_DEVICE": "cpu", "SPLADE_INTRA_OP_THREADS": "1", "SPLADE_MAX_QUERY_TERMS": "64",
           "SPLADE_LOG_LEVEL": "warning", "SPLADE_USE_INT8": "true"}
    with running_service(int8_model_dir, small_index_dir, env) as int8_url:
        info = httpx.get(f"{int8_url}/info").json()
        overlaps = []
        for text in PARITY_TEXTS:
            text = text[:2000]  # SPLADE_MAX_QUERY_CHARS; the encoder keeps only the first 64 tokens anyway
            fp32_terms, int8_terms = _top_terms(live_service, text), _top_terms(int8_url, text)
            overlaps.append(len(fp32_terms & int8_terms) / max(1, min(10, len(fp32_terms))))
    fp32_info = httpx.get(f"{live_service}/info").json()

    assert info["encoder"]["variant"] == "int8" and info["encoder"]["file"] == "query.int8.onnx"
    assert info["encoder"]["parity"]["top10_overlap"] == figure
    assert info["settings"]["use_int8"] is True
    assert fp32_info["encoder"]["variant"] == "fp32" and fp32_info["encoder"]["parity_against"] == "PyTorch reference"
    served = sum(overlaps) / len(overlaps)
    assert abs(served - figure) <= TOLERANCE, f"served overlap {served:.3f}, manifest {figure:.3f}"
