"""Ray deployment benchmark: throughput and p50/p99 of the Ray Serve application with 1 and 2 shards against the
single-process service, in the same run, on the same index and queries, plus the per-shard costs it measured and
the scaling they predict for more machines (on paper: nothing here runs on more than one machine).

    python bench/ray_serving.py [--model data/models/splade-tiny] [--index data/indexes/scifact]
                                [--shards 1,2] [--clients 1,8] [--seconds 6] [--out reports/bench-ray.json]

Every server uses one ONNX Runtime thread per encoder call and 64 query terms. The clients are
bench/service.py's (raw keep-alive connections in this process) and share the cores with the servers. On a
2-core machine the Ray application cannot be faster than one process: its deployments are separate processes
that add serialisation and hops (ingress -> encoder -> shards -> ingress) on the same two cores; the figures
say how much that costs, and the per-shard score times say what more machines would buy.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# bench/service.py's load generator and launcher (loaded by path: `service` is also our package's name).
_spec = importlib.util.spec_from_file_location("bench_service", REPO_ROOT / "bench" / "service.py")
bench_service = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_service)

from tests.support.server import free_port  # noqa: E402

SERVER_ENV = {"SPLADE_DEVICE": "cpu", "SPLADE_LOG_LEVEL": "warning", "SPLADE_MAX_QUERY_TERMS": "64",
              "SPLADE_QUEUE_LIMIT": "1024", "SPLADE_INTRA_OP_THREADS": "1"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "data/models/splade-tiny")
    parser.add_argument("--index", type=Path, default=REPO_ROOT / "data/indexes/scifact")
    parser.add_argument("--queries", type=Path, default=Path(
        os.environ.get("SPLADE_SCIFACT_DIR", REPO_ROOT.parent / "shared/data/scifact")) / "queries.jsonl")
    parser.add_argument("--shards", default="1,2")
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured time per (server, clients)")
    parser.add_argument("--num-cpus", type=float, default=None, help="CPUs of the local Ray cluster (default: all)")
    parser.add_argument("--paper-documents", type=int, default=10_000_000,
                        help="collection size of the on-paper rows")
    parser.add_argument("--paper-score-ms-per-million", type=float, default=4.43,
                        help="exact score time of one query over 1M documents, for the on-paper rows (default: "
                        "bench/index.py's 1M real-like figure in the README, k=10, this kind of machine); scaled "
                        "linearly with the documents a shard holds")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    return parser.parse_args()


def metric_means(exposition: str) -> dict[str, float]:
    """Mean seconds of the Ray ingress's histograms: each shard's score and call, the merge, each stage."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            base = sample.name.removesuffix("_sum").removesuffix("_count")
            if base not in ("splade_shard_score_duration_seconds", "splade_shard_call_duration_seconds",
                            "splade_merge_duration_seconds", "splade_stage_duration_seconds"):
                continue
            label = sample.labels.get("shard") or sample.labels.get("stage") or ""
            key = f"{base.removeprefix('splade_').removesuffix('_duration_seconds')}[{label}]"
            target = sums if sample.name.endswith("_sum") else counts if sample.name.endswith("_count") else None
            if target is not None:
                target[key] = target.get(key, 0.0) + sample.value
    return {key: sums[key] / counts[key] * 1000 for key in sums if counts.get(key)}


def drive_all(base_url: str, queries: list[str], clients: list[int], seconds: float) -> list[dict]:
    return [asyncio.run(bench_service.drive(base_url, queries, c, seconds)) for c in clients]


def run_ray(args, queries: list[str], clients: list[int], shard_counts: list[int]) -> dict[int, dict]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import httpx
    import ray
    from ray import serve

    from index_builder.shard import split_index
    from service.settings import Settings
    from splade_ray.deployments import RayOptions, build_application, wait_until_ready

    results = {}
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}})
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        base_url = f"http://127.0.0.1:{port}"
        settings = Settings(index_dir=args.index, model_dir=args.model, device="cpu", intra_op_threads=1,
                            max_query_terms=64, queue_limit=1024, log_level="warning")
        with tempfile.TemporaryDirectory(prefix="bench-ray-") as scratch:
            for count in shard_counts:
                shards_dir = Path(scratch) / f"shards-{count}"
                split_index(args.index, shards_dir, count)
                started = time.perf_counter()
                serve.run(build_application(settings, shards_dir, RayOptions()), name="splade", route_prefix="/")
                wait_until_ready(base_url, 300)
                ready_s = time.perf_counter() - started
                runs = drive_all(base_url, queries, clients, args.seconds)
                means = metric_means(httpx.get(f"{base_url}/metrics", timeout=30).text)
                results[count] = {"runs": runs, "mean_ms": means, "start_s": round(ready_s, 1)}
                serve.delete("splade")
    finally:
        serve.shutdown()
        ray.shutdown()
    return results


def on_paper(ray_results: dict[int, dict], index_documents: int, paper_documents: int,
             score_ms_per_million: float) -> dict:
    """Expected latency for N shards on N machines from the measured costs: encode + Ray hop overhead +
    one shard's score time (the whole collection's divided by N: exact scoring is linear in the postings a shard
    holds) + merge; for this index (its measured score time) and for `paper_documents` (score time from
    `score_ms_per_million`: a small index's time is mostly per-query fixed cost and does not extrapolate)."""
    one = ray_results.get(1) or next(iter(ray_results.values()))
    means = one["mean_ms"]
    encode = means.get("stage[encode]", float("nan"))
    score_1 = means.get("shard_score[0]", float("nan"))
    call_overhead = means.get("shard_call[0]", float("nan")) - score_1
    merge = means.get("merge[]", 0.0)
    rows = []
    for documents in (index_documents, paper_documents):
        score_all = score_1 if documents == index_documents else score_ms_per_million * documents / 1e6
        for n in (1, 2, 4, 8, 16):
            latency = encode + call_overhead + score_all / n + merge
            rows.append({"documents": documents, "machines": n, "shards": n,
                         "expected_latency_ms": round(latency, 2), "score_per_shard_ms": round(score_all / n, 3),
                         "shard_queries_per_core_s": round(1000.0 / (score_all / n), 1)})
    return {"inputs_ms": {"encode": encode, "score_1_shard": score_1, "ray_call_overhead": call_overhead,
                          "merge": merge, "score_per_million_documents": score_ms_per_million},
            "model": "latency = encode + call overhead + score(1 shard)/N + merge; more replicas of the encoder "
                     "and of each shard add throughput in proportion to the cores they get",
            "rows": rows}


def main() -> int:
    args = parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    shard_counts = [int(s) for s in args.shards.split(",")]
    queries = bench_service.load_queries(args.queries)
    cpu = bench_service.machine()
    print(f"machine: {cpu}")
    with bench_service.running_service(args.model, args.index, SERVER_ENV, ready_timeout=300) as base_url:
        single = {"runs": drive_all(base_url, queries, clients, args.seconds)}
    ray_results = run_ray(args, queries, clients, shard_counts)
    print(f"\n{'server':<22}{'clients':>8}{'q/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs single q/s':>15}")
    for label, result in [("single process", single)] + [(f"ray, {n} shard(s)", r) for n, r in ray_results.items()]:
        for run, base in zip(result["runs"], single["runs"]):
            print(f"{label:<22}{run['clients']:>8}{run['throughput_qps']:>9.1f}{run['p50_ms']:>9.2f}"
                  f"{run['p99_ms']:>9.2f}{run['throughput_qps'] / base['throughput_qps']:>14.2f}x")
    for n, result in ray_results.items():
        print(f"ray, {n} shard(s): ready in {result['start_s']} s; mean ms {json.dumps(result['mean_ms'])}")
    from engine import open_index

    index_documents = open_index(args.index).num_documents
    paper = on_paper(ray_results, index_documents, args.paper_documents, args.paper_score_ms_per_million)
    print(f"\non paper ({paper['model']}): inputs {json.dumps(paper['inputs_ms'])}")
    for row in paper["rows"]:
        print(f"  {row['documents']:>10,} documents, {row['machines']:>2} machines x 1 shard: "
              f"{row['expected_latency_ms']} ms (score per shard {row['score_per_shard_ms']} ms, "
              f"{row['shard_queries_per_core_s']} queries/s per scoring core)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": cpu, "single": single, "ray": ray_results, "on_paper": paper},
                                       indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
