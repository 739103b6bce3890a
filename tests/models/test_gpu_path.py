"""The GPU path's logic on the CPU provider (no CUDA here): provider selection, the IO-binding run, warm-up
shapes, the fp16 variant's selection. What needs a GPU is checked by bench/gpu_checks.py."""
from __future__ import annotations

import numpy as np
import pytest

from models.gpu import device_of, run_bound, run_top_k, uses_io_binding, warm_up, warm_up_shapes
from models.providers import CPU, CUDA, RuntimeOptions, check_session_provider, providers_to_request
from models.errors import ArtifactError, ProviderError
from models.variants import fp16_name, served_graph, variant_of


def test_io_binding_is_chosen_for_cuda_only():
    assert uses_io_binding(CUDA) and device_of(CUDA) == "cuda"
    assert not uses_io_binding(CPU) and device_of(CPU) == "cpu"
    assert not uses_io_binding("lookup")


def test_provider_requests_prefer_cuda_when_listed_and_refuse_a_silent_cpu_fallback():
    assert providers_to_request("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert providers_to_request("auto", [CPU]) == [CPU]
    assert providers_to_request("cpu", [CUDA, CPU]) == [CPU]
    with pytest.raises(ProviderError, match="not available"):
        providers_to_request("cuda", [CPU])
    with pytest.raises(ProviderError, match="falls back to CPU silently"):
        check_session_provider("cuda", [CPU])
    assert check_session_provider("auto", [CPU]) == CPU


def test_the_io_bound_run_returns_what_run_returns(default_model_dir):
    from models.runtime import load_query_encoder

    encoder = load_query_encoder(default_model_dir, RuntimeOptions(device="cpu", intra_op_threads=1))
    batch = encoder.tokenize(["vitamin d deficiency", "p53 mutations are found in about half of cancers"])
    feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
             "top_k": np.array(64, dtype=np.int64)}
    plain = encoder.session.run(["term_ids", "weights"], feeds)
    bound = run_bound(encoder.session, feeds, "cpu")
    chosen = run_top_k(encoder.session, feeds, encoder.provider)
    assert bound[0].shape == plain[0].shape == (2, 64)
    np.testing.assert_array_equal(bound[0], plain[0])
    np.testing.assert_array_equal(bound[1], plain[1])
    np.testing.assert_array_equal(chosen[0], plain[0])


def test_warm_up_shapes_follow_the_token_budget_and_run(default_model_dir):
    from models.runtime import load_query_encoder

    shapes = warm_up_shapes(budget_tokens=256, max_length=64, max_batch=32)
    assert (1, 64) in shapes and (4, 64) in shapes and (8, 64) not in shapes  # 8 x 64 = 512 > 256
    assert (32, 8) in shapes and (64, 8) not in shapes  # the batch-size cap
    assert all(rows == 1 or rows * tokens <= 256 for rows, tokens in shapes)
    assert max(tokens for _, tokens in shapes) == 64
    encoder = load_query_encoder(default_model_dir, RuntimeOptions(device="cpu", intra_op_threads=1))
    assert warm_up(encoder.session, encoder.provider, [(2, 8), (1, 16)]) == 2


def test_variants_are_named_and_selected(default_model_dir):
    from models.runtime import load_query_encoder

    assert fp16_name("query.onnx") == "query.fp16.onnx"
    assert [variant_of(n) for n in ("query.onnx", "query.int8.onnx", "query.fp16.onnx")] == ["fp32", "int8", "fp16"]
    with pytest.raises(ValueError, match="exclusive"):
        RuntimeOptions(use_int8=True, use_fp16=True)
    with pytest.raises(ArtifactError, match="query.fp16.onnx is missing"):
        load_query_encoder(default_model_dir, RuntimeOptions(device="cpu", use_fp16=True))
    manifest = {"parity": {"query": {"top10_overlap": 1.0}}, "fp16": {"query.fp16.onnx": {"top10_overlap": 0.99}}}
    assert served_graph(manifest, default_model_dir / "query.fp16.onnx")["parity"] == {"top10_overlap": 0.99}
    assert served_graph(manifest, default_model_dir / "query.onnx")["parity_against"] == "PyTorch reference"


@pytest.mark.slow
def test_the_fp16_variant_is_written_with_its_figures_and_served_on_the_cpu_provider(default_model_dir, tmp_path):
    """On CPU only the mechanics are checked (the figures a GPU gives come from bench/gpu_checks.py)."""
    import shutil

    from models import artifact
    from models.fp16 import add_fp16_variants
    from models.runtime import load_query_encoder

    out = tmp_path / "artifact"
    out.mkdir()
    for name in ("manifest.json", "tokenizer.json", "query.onnx"):
        shutil.copy(default_model_dir / name, out / name)
    figures = add_fp16_variants(out, ["CPUExecutionProvider"])
    assert artifact.read_manifest(out)["fp16"] == figures
    assert figures["query.fp16.onnx"]["top10_overlap"] >= 0.9
    fp16 = load_query_encoder(out, RuntimeOptions(device="cpu", intra_op_threads=1, use_fp16=True))
    fp32 = load_query_encoder(out, RuntimeOptions(device="cpu", intra_op_threads=1))
    [(ids16, _)], [(ids32, _)] = fp16.encode(["vitamin d deficiency"], 10), fp32.encode(["vitamin d deficiency"], 10)
    assert fp16.onnx_path.name == "query.fp16.onnx"
    assert len(set(ids16.tolist()) & set(ids32.tolist())) >= 8


def test_the_gpu_check_script_says_plainly_when_there_is_no_cuda(tmp_path):
    import subprocess
    import sys

    import onnxruntime

    from tests.support.server import REPO_ROOT

    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("CUDA is here: the script would run its checks")
    run = subprocess.run([sys.executable, "bench/gpu_checks.py", "--json", str(tmp_path / "r.json")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "no CUDAExecutionProvider" in run.stderr
