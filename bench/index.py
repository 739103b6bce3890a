"""Index benchmark: build time, size on disk, memory after opening, single-thread exact scoring latency,
next to a scipy sparse-product baseline measured in the same run (timings drift between runs on shared
machines: read the ratios).

    python bench/index.py                          # 1M light + heavy synthetic documents, 1,000 queries
    python bench/index.py --docs 100000            # quicker
    python bench/index.py --calibrated /tmp/calibrated --calibrated-tag 1M   # data from synth_calibrated.py

The calibrated data (../shared/bench/synth_calibrated.py, real-like SPLADE-Tiny statistics) is read only when
asked for; nothing in the project depends on it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is first on sys.path and its service.py benchmark would shadow the service package.
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

from bench.synthetic_collection import VOCAB_SIZE, Collection, generate, load_calibrated  # noqa: E402
from index_builder.csr_index import build_index_from_csr  # noqa: E402
from engine.index_format import open_index  # noqa: E402
from engine import ServedIndex, SparseQuery  # noqa: E402
from engine.kernels.exact import score_exact  # noqa: E402

RSS_PROBE = """
import resource, sys, numpy as np
def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS'):
                return int(line.split()[1]) / 1024
from engine.index_format import open_index
from engine.kernels.exact import score_exact
before = rss_mb()  # after the imports: what opening the index itself costs
index = open_index(sys.argv[1])
opened = rss_mb()
acc = np.zeros(index.num_documents, np.float32)
score_exact(index.offsets, index.doc_numbers, index.impacts, np.array([0], np.int32), np.array([1.0], np.float32),
            index.scale, 10, acc)
print(before, opened, rss_mb())
"""


def percentiles(ms: np.ndarray) -> dict[str, float]:
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def time_numba(index, collection: Collection, k: int) -> tuple[dict, list[np.ndarray], float]:
    acc = np.zeros(index.num_documents, dtype=np.float32)
    scale = np.float32(index.scale)
    times, results, postings = [], [], 0
    for i in range(collection.num_queries):
        terms, weights = collection.query(i)
        t0 = time.perf_counter()
        docs, _, traversed = score_exact(index.offsets, index.doc_numbers, index.impacts, terms, weights, scale, k,
                                         acc)
        times.append(time.perf_counter() - t0)
        results.append(docs)
        postings += traversed
    return percentiles(np.array(times) * 1000), results, postings / collection.num_queries


def time_seam(index, collection: Collection, k: int) -> dict:
    """The same kernel through the engine's scorer seam (snapshot -> registry -> scorer -> TopK), as served."""
    served = ServedIndex(index)
    times = []
    with served.acquire() as snapshot:
        for i in range(collection.num_queries):
            terms, weights = collection.query(i)
            query = SparseQuery(np.ascontiguousarray(terms, np.int32), np.ascontiguousarray(weights, np.float32))
            t0 = time.perf_counter()
            snapshot.search(query, k)
            times.append(time.perf_counter() - t0)
    return percentiles(np.array(times) * 1000)


def time_scipy(term_major: sp.csr_matrix, collection: Collection, k: int) -> tuple[dict, list[np.ndarray]]:
    """The best plain scipy can do: (1 x V sparse query) @ (V x N term-major postings), then argpartition."""
    times, results = [], []
    for i in range(collection.num_queries):
        terms, weights = collection.query(i)
        t0 = time.perf_counter()
        query = sp.csr_matrix((weights, terms, np.array([0, len(terms)])), shape=(1, term_major.shape[0]))
        row = query @ term_major
        scores, docs = row.data, row.indices
        if len(scores) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            scores, docs = scores[top], docs[top]
        order = np.lexsort((docs, -scores))
        times.append(time.perf_counter() - t0)
        results.append(docs[order])
    return percentiles(np.array(times) * 1000), results


def recall_against(results: list[np.ndarray], reference: list[np.ndarray]) -> float:
    hits = sum(len(np.intersect1d(a, b)) for a, b in zip(results, reference))
    return hits / max(1, sum(len(b) for b in reference))


def bench_collection(name: str, collection: Collection, workdir: Path, memory_budget_mb: int) -> dict:
    out = workdir / name
    t0 = time.perf_counter()
    build_index_from_csr(out, collection.indptr, collection.term_ids, collection.weights, vocab_size=VOCAB_SIZE,
                         memory_budget_mb=memory_budget_mb)
    build_s = time.perf_counter() - t0
    size_mb = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    probe = subprocess.run([sys.executable, "-c", RSS_PROBE, str(out)], cwd=REPO_ROOT, capture_output=True,
                           text=True, check=True)
    rss_before, rss_opened, rss_first_query = map(float, probe.stdout.split())
    index = open_index(out)
    # The same quantized weights for scipy, so both engines rank the same scores.
    term_major = sp.csr_matrix((index.impacts.astype(np.float32) * np.float32(index.scale),
                                index.doc_numbers.astype(np.int32), index.offsets),
                               shape=(VOCAB_SIZE, index.num_documents))
    row = {"name": name, "documents": index.num_documents, "postings": index.num_postings,
           "build_s": build_s, "size_mb": size_mb, "rss_opened_mb": rss_opened - rss_before,
           "rss_after_first_query_mb": rss_first_query - rss_before}
    time_numba(index, collection, 10)  # JIT and page warm-up, not timed
    for k in (10, 1000):
        numba_ms, numba_results, postings = time_numba(index, collection, k)
        seam_ms = time_seam(index, collection, k)
        scipy_ms, scipy_results = time_scipy(term_major, collection, k)
        row[f"k{k}"] = {"numba_ms": numba_ms, "seam_ms": seam_ms, "scipy_ms": scipy_ms,
                        "speedup_mean": scipy_ms["mean"] / numba_ms["mean"],
                        "agreement_with_scipy": recall_against(numba_results, scipy_results)}
        row["postings_per_query"] = postings
    row["postings_per_query_over_n"] = row["postings_per_query"] / index.num_documents
    del term_major, index
    shutil.rmtree(out)
    return row


def report(rows: list[dict]) -> str:
    lines = ["| collection | docs | postings/query (x N) | build s | size MiB | RSS opened MiB | k "
             "| numba mean / p50 / p99 ms | through the seam mean / p99 ms | scipy mean / p50 / p99 ms "
             "| scipy/numba | top-k agreement |",
             "|" + "---|" * 12]
    for r in rows:
        for k in (10, 1000):
            n, s = r[f"k{k}"]["numba_ms"], r[f"k{k}"]["scipy_ms"]
            lines.append(
                f"| {r['name']} | {r['documents']:,} | {r['postings_per_query']:,.0f} "
                f"({r['postings_per_query_over_n']:.2f}) "
                f"| {r['build_s']:.1f} | {r['size_mb']:.0f} | {r['rss_opened_mb']:.1f} | {k} "
                f"| {n['mean']:.2f} / {n['p50']:.2f} / {n['p99']:.2f} "
                f"| {r[f'k{k}']['seam_ms']['mean']:.2f} / {r[f'k{k}']['seam_ms']['p99']:.2f} "
                f"| {s['mean']:.2f} / {s['p50']:.2f} / {s['p99']:.2f} "
                f"| {r[f'k{k}']['speedup_mean']:.1f}x | {r[f'k{k}']['agreement_with_scipy']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000, help="synthetic collection size (1,000,000)")
    parser.add_argument("--queries", type=int, default=1000, help="queries per collection (1,000)")
    parser.add_argument("--profiles", nargs="*", default=["light", "heavy"], choices=["light", "heavy"],
                        help="synthetic profiles to run (none: only --calibrated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrated", default=None, help="folder written by synth_calibrated.py")
    parser.add_argument("--calibrated-tag", default="1M", help="docs_<tag>.npz to read (1M, 100k)")
    parser.add_argument("--memory-budget-mb", type=int, default=1024)
    parser.add_argument("--workdir", default=None, help="where indexes are built (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-index-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for profile in args.profiles:
            t0 = time.perf_counter()
            collection = generate(args.docs, args.queries, profile, args.seed)
            print(f"generated {profile} {args.docs:,} docs in {time.perf_counter() - t0:.1f} s: "
                  f"{len(collection.term_ids) / args.docs:.1f} terms/doc, "
                  f"{len(collection.query_term_ids) / args.queries:.1f} terms/query", flush=True)
            rows.append(bench_collection(f"synthetic-{profile}", collection, workdir, args.memory_budget_mb))
            print(report(rows[-1:]), flush=True)
            del collection
        if args.calibrated:
            collection = load_calibrated(args.calibrated, args.calibrated_tag)
            collection = Collection(collection.indptr, collection.term_ids, collection.weights,
                                    collection.query_indptr[: args.queries + 1], collection.query_term_ids,
                                    collection.query_weights)
            rows.append(bench_collection(f"calibrated-{args.calibrated_tag}", collection, workdir,
                                         args.memory_budget_mb))
            print(report(rows[-1:]), flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"machine: {os.cpu_count()} CPUs, {os.uname().machine}; single-thread scoring; "
          "timings are noisy on a shared host")
    print(report(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
