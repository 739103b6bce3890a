"""Scorers as a client sees them: latency of POST /search at the client and the server's own `score` stage, for
each scorer configuration, against one real uvicorn on 127.0.0.1 serving a large index, in the same run.

    python bench/service_scorers.py --calibrated /tmp/calibrated [--tag 1M] [--index DIR] [--queries 300]
        [--k 10 1000] [--config NAME[:KNOB=VALUE,...] ...] [--out reports/bench-service-scorers.json]

The index is built once from the calibrated collection (`../shared/bench/synth_calibrated.py`, uint16 impacts,
as bench/scorers.py does) into --index, and the parts the configurations' scorers need are added with the CLI
(`python -m index_builder add-parts`). Queries go as raw sparse vectors (`vector`, tokens of the model's
vocabulary), so encoding stays out of the comparison (bench/encode.py measures it) and every configuration
scores the same query; the server keeps up to 4,096 query terms (`SPLADE_MAX_QUERY_TERMS`), so that no query is
pruned. One keep-alive client sends each query to every configuration, in a fresh random order per query, after
a warm-up pass; ratios are against `exact` in the same run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.service import KeepAliveConnection, percentile  # noqa: E402
from bench.synthetic_collection import VOCAB_SIZE, load_calibrated  # noqa: E402
from tests.support.server import running_service  # noqa: E402

DEFAULT_CONFIGS = {
    10: ["exact", "exact-blocked",
         "pruned-rescore:query_mass=0.8,candidates=300,max_postings=700000,tier_cut=0.3",
         "pruned-rescore:query_mass=0.8,candidates=400,max_postings=600000,tier_cut=0.3"],
    1000: ["exact", "exact-blocked", "pruned-rescore:query_mass=0.95,candidates=1700,max_postings=0,tier_cut=0.1",
           "pruned-rescore:query_mass=0.95,candidates=2000,max_postings=0,tier_cut=0.1"],
}
PART_OF = {"exact-blocked": "blocked_exact", "pruned-rescore": "pruned_rescore", "clustered": "clustered"}


def parse_config(text: str) -> tuple[str, dict[str, float]]:
    name, _, knobs = text.partition(":")
    options = {}
    for item in filter(None, knobs.split(",")):
        key, _, value = item.partition("=")
        options[key] = float(value)
    return name, options


def ensure_index(index: Path, model: Path, calibrated: str, tag: str, scorers: set[str]) -> None:
    if not (index / "manifest.json").exists():
        from index_builder.csr_index import build_index_from_csr
        collection = load_calibrated(calibrated, tag)
        started = time.perf_counter()
        # The calibrated term ids are the model's vocabulary: the index says so, as the service checks.
        tokenizer_sha256 = json.loads((model / "manifest.json").read_text())["tokenizer_sha256"]
        build_index_from_csr(index, collection.indptr, collection.term_ids, collection.weights,
                             vocab_size=VOCAB_SIZE, impact_bits=16, tokenizer_sha256=tokenizer_sha256)
        print(f"built {index} in {time.perf_counter() - started:.1f} s", flush=True)
    from engine.scorers import registered
    for scorer in sorted(scorers):
        part = PART_OF.get(scorer)
        manifest = json.loads((index / "manifest.json").read_text())
        present = manifest.get("parts", {}).get(part)
        if part is None or (present and present["version"] == registered()[scorer].part_versions.get(part)):
            continue
        print(f"adding the {part} part (layout {registered()[scorer].part_versions.get(part)}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "index_builder", "add-parts", "--index", str(index), "--scorer",
                        scorer], cwd=REPO_ROOT, check=True)


def vector_queries(calibrated: str, tag: str, model: Path, count: int) -> list[dict[str, float]]:
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    collection = load_calibrated(calibrated, tag)
    out = []
    for i in range(min(count, collection.num_queries)):
        ids, weights = collection.query(i)
        out.append({tokenizer.id_to_token(int(t)): float(w) for t, w in zip(ids, weights) if w > 0})
    return out


async def measure(base_url: str, vectors: list[dict[str, float]], k: int, configs: list[str], seed: int) -> dict:
    host, port = base_url.removeprefix("http://").split(":")
    connection = KeepAliveConnection(host, int(port))
    await connection.open()
    parsed = [parse_config(c) for c in configs]
    bodies = [[json.dumps({"vector": v, "k": k, "scorer": name, "scorer_options": options}).encode()
               for name, options in parsed] for v in vectors]
    client = {c: [] for c in configs}
    server = {c: [] for c in configs}
    hits = {c: [] for c in configs}
    rng = np.random.default_rng(seed)
    for record in (False, True):  # a warm-up pass (page cache, Numba), then the measured one
        for per_query in bodies:
            for j in rng.permutation(len(configs)):
                started = time.perf_counter()
                status, payload = await connection.request("POST", "/search", per_query[j])
                elapsed = (time.perf_counter() - started) * 1000
                if status != 200:
                    raise RuntimeError(f"{configs[j]}: HTTP {status}: {payload[:300]!r}")
                if record:
                    answer = json.loads(payload)
                    client[configs[j]].append(elapsed)
                    server[configs[j]].append(answer["timings_ms"]["score"])
                    hits[configs[j]].append([h["id"] for h in answer["hits"]])
    await connection.close()
    exact_hits = hits["exact"] if "exact" in hits else None
    rows = {}
    for c in configs:
        row = {"client_mean_ms": float(np.mean(client[c])), "client_p50_ms": percentile(client[c], 50),
               "client_p99_ms": percentile(client[c], 99), "score_mean_ms": float(np.mean(server[c])),
               "score_p99_ms": percentile(server[c], 99)}
        if exact_hits is not None:
            row["recall_vs_exact"] = float(np.mean([len(set(a) & set(b)) / max(1, len(b))
                                                     for a, b in zip(hits[c], exact_hits)]))
        rows[c] = row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibrated", required=True, help="folder written by ../shared/bench/synth_calibrated.py")
    parser.add_argument("--tag", default="1M")
    parser.add_argument("--index", type=Path, default=REPO_ROOT / "data/indexes/calibrated-1M")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "data/models/splade-tiny")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, nargs="*", default=[10, 1000])
    parser.add_argument("--config", action="append", default=None, metavar="NAME[:KNOB=VALUE,...]",
                        help="a scorer and its request options (repeatable; default: DEFAULT_CONFIGS per k)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports/bench-service-scorers.json")
    args = parser.parse_args()

    configs = {k: args.config or DEFAULT_CONFIGS.get(k, DEFAULT_CONFIGS[10]) for k in args.k}
    scorers = {parse_config(c)[0] for cs in configs.values() for c in cs}
    ensure_index(args.index, args.model, args.calibrated, args.tag, scorers)
    vectors = vector_queries(args.calibrated, args.tag, args.model, args.queries)
    env = {"SPLADE_MAX_QUERY_TERMS": "4096", "SPLADE_RECALL_SAMPLE_RATE": "0"}
    results = {}
    with running_service(args.model, args.index, env, ready_timeout=600) as base_url:
        for k in args.k:
            rows = asyncio.run(measure(base_url, vectors, k, configs[k], seed=k))
            results[k] = rows
            base = rows.get("exact")
            print(f"\n### k={k}, {len(vectors)} queries, one client (ratios vs exact, same run)\n")
            print("| configuration | client mean / p50 / p99 ms | server score mean / p99 ms | client mean, p99 vs "
                  "exact | recall vs exact |")
            print("|---|---|---|---|---|")
            for c, r in rows.items():
                ratio = (f"{r['client_mean_ms'] / base['client_mean_ms']:.2f}x, "
                         f"{r['client_p99_ms'] / base['client_p99_ms']:.2f}x") if base else "n/a"
                print(f"| {c} | {r['client_mean_ms']:.2f} / {r['client_p50_ms']:.2f} / {r['client_p99_ms']:.2f} | "
                      f"{r['score_mean_ms']:.2f} / {r['score_p99_ms']:.2f} | {ratio} | "
                      f"{r.get('recall_vs_exact', float('nan')):.4f} |")
    machine = f"{platform.processor() or platform.machine()}, {subprocess.getoutput('nproc')} cores"
    cpu = subprocess.getoutput("lscpu | sed -n 's/^Model name: *//p'")
    print(f"\nCPU: {cpu} ({machine}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu, "queries": len(vectors), "results": results}, indent=2))


if __name__ == "__main__":
    main()
