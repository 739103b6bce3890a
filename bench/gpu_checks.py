"""GPU checks, one short script for a CUDA machine (about 2-5 minutes): does the CUDA path give what the CPU
graph gives, what does fp16 cost, and how fast is it.

    python bench/gpu_checks.py [--model-dir data/models/splade-tiny] [--json reports/gpu-checks.json]
                               [--write-fp16] [--seconds 5]

1. provider: onnxruntime lists CUDAExecutionProvider and a device=cuda session really runs on it;
2. parity, CUDA fp32 (IO binding, models/gpu.py) against the CPU fp32 graph on the parity texts, all weights
   (top_k = vocabulary): max abs diff, top-64 sets agree, top-10 overlap; IO binding against plain run();
3. fp16: writes query.fp16.onnx / doc.fp16.onnx into a copy of the artifact (or into --model-dir itself with
   --write-fp16, recording the figures in its manifest) and measures fp16 against fp32, both on CUDA;
4. speed: single-query p50 and batch-32 queries/s, CUDA fp32 / CUDA fp16 / CPU fp32, and the batch-shape
   warm-up's duration.

Exit 0 when CUDA is used and parity holds (fp32 top-10 overlap >= 0.99, fp16 >= 0.95), 1 when a check fails,
2 when there is no CUDA. For the service figures, run bench/service.py with --env SPLADE_DEVICE=cuda.
Written without a GPU to run it on: see docs/encoders.md, "GPU path" for its status.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

import onnxruntime  # noqa: E402

from models.fp16 import add_fp16_variants  # noqa: E402
from models.gpu import run_bound, warm_up, warm_up_shapes  # noqa: E402
from models.parity import PARITY_TEXTS, compare, dense_from_top_k  # noqa: E402
from models.providers import CUDA  # noqa: E402
from models.runtime import RuntimeOptions, load_query_encoder  # noqa: E402

FP32_FLOOR, FP16_FLOOR = 0.99, 0.95


def dense(encoder, texts: list[str]) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), 8):
        batch = encoder.tokenize(texts[start:start + 8])
        feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
                 "top_k": np.array(encoder.vocab_size, dtype=np.int64)}
        term_ids, weights = encoder.session.run(["term_ids", "weights"], feeds)
        rows.append(dense_from_top_k(term_ids, weights, encoder.vocab_size))
    return np.concatenate(rows)


def speed(encoder, texts: list[str], seconds: float) -> dict:
    singles = [encoder.tokenize([t]) for t in texts[:200]]
    for batch in singles[:20]:
        encoder.encode_tokenized(batch, 64)
    times = []
    for batch in singles:
        started = time.perf_counter()
        encoder.encode_tokenized(batch, 64)
        times.append(time.perf_counter() - started)
    batches = [encoder.tokenize((texts * 4)[i:i + 32]) for i in range(0, 128, 32)]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for batch in batches:
            encoder.encode_tokenized(batch, 64)
            done += len(batch)
    return {"single_p50_ms": float(np.median(times) * 1e3), "single_p99_ms": float(np.percentile(times, 99) * 1e3),
            "batch32_qps": done / (time.perf_counter() - started)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "data/models/splade-tiny")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "reports/gpu-checks.json")
    parser.add_argument("--write-fp16", action="store_true", help="write the fp16 graphs into --model-dir")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    report: dict = {"onnxruntime": onnxruntime.__version__, "available": onnxruntime.get_available_providers()}
    failures: list[str] = []
    if CUDA not in report["available"]:
        print(f"no {CUDA} in this onnxruntime build ({report['available']}): nothing to check", file=sys.stderr)
        return 2

    cpu = load_query_encoder(args.model_dir, RuntimeOptions(device="cpu"))
    cuda = load_query_encoder(args.model_dir, RuntimeOptions(device="cuda"))  # raises if it falls back to CPU
    report["provider"] = cuda.provider
    texts = [t for t in PARITY_TEXTS]
    reference = dense(cpu, texts)
    report["parity_cuda_fp32_vs_cpu"] = compare(reference, dense(cuda, texts))
    batch = cuda.tokenize(texts[:8])
    feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "top_k": np.array(64, np.int64)}
    plain = cuda.session.run(["term_ids", "weights"], feeds)
    bound = run_bound(cuda.session, feeds, "cuda")
    report["io_binding_equals_run"] = bool(np.array_equal(plain[0], bound[0]) and np.allclose(plain[1], bound[1]))
    if report["parity_cuda_fp32_vs_cpu"]["top10_overlap"] < FP32_FLOOR:
        failures.append(f"CUDA fp32 top-10 overlap {report['parity_cuda_fp32_vs_cpu']['top10_overlap']:.3f}")
    if not report["io_binding_equals_run"]:
        failures.append("IO binding differs from run()")

    with tempfile.TemporaryDirectory(prefix="gpu-checks-") as tmp:
        fp16_dir = args.model_dir if args.write_fp16 else Path(tmp) / "artifact"
        if not args.write_fp16:
            shutil.copytree(args.model_dir, fp16_dir)
        report["fp16_manifest_figures"] = add_fp16_variants(fp16_dir, [CUDA, "CPUExecutionProvider"])
        fp16 = load_query_encoder(fp16_dir, RuntimeOptions(device="cuda", use_fp16=True))
        report["parity_cuda_fp16_vs_cpu_fp32"] = compare(reference, dense(fp16, texts))
        if report["parity_cuda_fp16_vs_cpu_fp32"]["top10_overlap"] < FP16_FLOOR:
            failures.append(f"fp16 top-10 overlap {report['parity_cuda_fp16_vs_cpu_fp32']['top10_overlap']:.3f}")

        started = time.perf_counter()
        shapes = warm_up_shapes(16384, cuda.max_length, 32)
        warm_up(cuda.session, cuda.provider, shapes)
        report["warm_up"] = {"shapes": len(shapes), "seconds": time.perf_counter() - started}
        queries = [t for t in texts if len(t) < 300]
        report["speed"] = {"cuda_fp32": speed(cuda, queries, args.seconds),
                           "cuda_fp16": speed(fp16, queries, args.seconds),
                           "cpu_fp32": speed(cpu, queries, args.seconds)}
    report["failures"] = failures
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
