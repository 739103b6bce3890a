"""Service benchmark: throughput and latency at 1, 8 and 32 concurrent clients against a real uvicorn on
127.0.0.1, micro-batching on vs off in the same run, the split of time by stage, and the HTTP + JSON
overhead over the in-process Searcher.

    python bench/service.py [--model data/models/splade-tiny] [--index data/indexes/scifact]
                            [--queries ../shared/data/scifact/queries.jsonl] [--seconds 8]
                            [--concurrency 1,8,32] [--out reports/bench-service.json]

The index defaults to SciFact (built once into data/indexes/scifact if missing). The clients run in this
process (asyncio + httpx, keep-alive) and share the machine's cores with the server: compare the two
modes measured in the same run, not absolute figures across runs.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.server import running_service  # noqa: E402  (the shared real-server launcher)

STAGES = ("tokenize", "queue", "encode", "score", "total")
MODES = {
    # name: service settings
    "batching": {"SPLADE_ENCODER_MAX_BATCH_SIZE": "32"},
    "no-batching": {"SPLADE_ENCODER_MAX_BATCH_SIZE": "1"},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "data/models/splade-tiny")
    parser.add_argument("--index", type=Path, default=REPO_ROOT / "data/indexes/scifact")
    parser.add_argument("--queries", type=Path, default=Path(
        os.environ.get("SPLADE_SCIFACT_DIR", REPO_ROOT.parent / "shared/data/scifact")) / "queries.jsonl")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per (mode, concurrency)")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--max-wait-ms", type=float, default=None,
                        help="SPLADE_ENCODER_MAX_WAIT_MS for the batching mode (default: the service default)")
    parser.add_argument("--intra-op-threads", type=int, default=None,
                        help="ONNX Runtime threads per encoder call, server and in-process alike (default: service default)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra SPLADE_* setting for both servers (repeatable)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports/bench-service.json")
    return parser.parse_args()


def ensure_index(index: Path, model: Path, queries: Path) -> None:
    if (index / "manifest.json").exists():
        return
    corpus = queries.parent
    print(f"building {index} from {corpus} (once)...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "index_builder", "build", "--model", str(model), "--corpus", str(corpus),
         "--out", str(index), "--doc-max-terms", "128", "--max-length", "256", "--no-progress"],
        cwd=REPO_ROOT, check=True,
    )


def load_queries(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def drive(base_url: str, queries: list[str], clients: int, seconds: float) -> dict:
    """`clients` closed-loop clients for `seconds` (after a short warm-up); latencies in ms."""
    latencies: list[float] = []
    stage_sums = dict.fromkeys(STAGES, 0.0)
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        async def one_client(worker: int, until: float, record: bool) -> None:
            nonlocal errors
            i = worker * 7919
            while time.perf_counter() < until:
                text = queries[i % len(queries)]
                i += 1
                started = time.perf_counter()
                response = await client.post("/search", json={"query": text, "k": 10})
                elapsed = (time.perf_counter() - started) * 1000
                if not record:
                    continue
                if response.status_code != 200:
                    errors += 1
                    continue
                latencies.append(elapsed)
                for stage, ms in response.json()["timings_ms"].items():
                    stage_sums[stage] += ms

        warm_until = time.perf_counter() + 1.0
        await asyncio.gather(*(one_client(w, warm_until, False) for w in range(clients)))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(one_client(w, until, True) for w in range(clients)))
        elapsed = time.perf_counter() - started
        metrics = (await client.get("/metrics")).text
    n = len(latencies)
    return {
        "clients": clients,
        "requests": n,
        "errors": errors,
        "throughput_qps": n / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "stage_mean_ms": {s: (v / n if n else float("nan")) for s, v in stage_sums.items()},
        "mean_encoder_batch": mean_batch_size(metrics),
    }


def mean_batch_size(exposition: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in ("splade_encoder_batch_size_sum", "splade_encoder_batch_size_count"):
                values[sample.name] = sample.value
    count = values.get("splade_encoder_batch_size_count", 0)
    return values.get("splade_encoder_batch_size_sum", 0) / count if count else float("nan")


def in_process_latency(model: Path, index: Path, queries: list[str], seconds: float, intra_op_threads: int) -> dict:
    """The same queries through the Searcher, no HTTP: the floor the service adds its overhead to."""
    from models.runtime import RuntimeOptions
    from service.searcher import Searcher

    searcher = Searcher.from_paths(index, model, RuntimeOptions(device="cpu", intra_op_threads=intra_op_threads), query_max_terms=64)
    searcher.warm_up()
    latencies = []
    until = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < until:
        started = time.perf_counter()
        searcher.search(queries[i % len(queries)], k=10)
        latencies.append((time.perf_counter() - started) * 1000)
        i += 1
    return {"requests": len(latencies), "p50_ms": percentile(latencies, 50), "mean_ms": statistics.fmean(latencies),
            "p99_ms": percentile(latencies, 99)}


def machine() -> dict:
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "load_avg_at_start": os.getloadavg()}


def main() -> int:
    args = parse_args()
    queries = load_queries(args.queries)
    ensure_index(args.index, args.model, args.queries)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    report = {"machine": machine(), "index": str(args.index), "queries": len(queries), "seconds": args.seconds,
              "extra_env": args.env, "modes": {}}

    threads = args.intra_op_threads if args.intra_op_threads is not None else 0
    report["intra_op_threads"] = threads
    report["in_process"] = in_process_latency(args.model, args.index, queries, min(args.seconds, 5.0), threads)
    print(f"in-process Searcher: p50 {report['in_process']['p50_ms']:.3f} ms", flush=True)

    for mode, env in MODES.items():
        env = {"SPLADE_DEVICE": "cpu", "SPLADE_LOG_LEVEL": "warning", "SPLADE_MAX_QUERY_TERMS": "64",
               "SPLADE_QUEUE_LIMIT": "1024", "SPLADE_INTRA_OP_THREADS": str(threads), **env}
        env.update(item.split("=", 1) for item in args.env)
        if mode == "batching" and args.max_wait_ms is not None:
            env["SPLADE_ENCODER_MAX_WAIT_MS"] = str(args.max_wait_ms)
        rows = []
        with running_service(args.model, args.index, env) as base_url:
            for clients in concurrency:
                row = asyncio.run(drive(base_url, queries, clients, args.seconds))
                rows.append(row)
                stages = " ".join(f"{s} {row['stage_mean_ms'][s]:.2f}" for s in STAGES)
                print(f"{mode:12s} c={clients:3d}: {row['throughput_qps']:7.1f} q/s  p50 {row['p50_ms']:7.2f} ms  "
                      f"p99 {row['p99_ms']:7.2f} ms  batch {row['mean_encoder_batch']:.1f}  errors {row['errors']}  "
                      f"[{stages}]", flush=True)
        report["modes"][mode] = rows

    by_clients = {m: {r["clients"]: r for r in rows} for m, rows in report["modes"].items()}
    top = max(concurrency)
    report["batching_speedup_at_max_clients"] = (
        by_clients["batching"][top]["throughput_qps"] / by_clients["no-batching"][top]["throughput_qps"]
    )
    if 1 in concurrency:
        report["http_overhead_ms_at_1_client"] = {
            mode: by_clients[mode][1]["p50_ms"] - report["in_process"]["p50_ms"] for mode in MODES
        }
    print(f"batching speed-up at {top} clients: {report['batching_speedup_at_max_clients']:.2f}x (goal >= 1.5x)")
    if "http_overhead_ms_at_1_client" in report:
        overhead = report["http_overhead_ms_at_1_client"]
        print("HTTP + JSON overhead at 1 client (p50 over in-process p50): "
              + ", ".join(f"{m} {v:.3f} ms" for m, v in overhead.items()) + " (goal < 1 ms)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
