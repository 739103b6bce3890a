"""Query-time pruning strategies (engine.query_pruning, engine.two_phase) against the exact scorer on a large
collection: score latency and postings traversed, interleaved query by query in one process, repeated.

    python bench/query_pruning.py --calibrated /tmp/calibrated --tag 1M          # real-like 1M set
    python bench/query_pruning.py --calibrated /tmp/calibrated --tag 100k --queries 200 --repeats 2

The quality side of the same strategies (nDCG@10 on SciFact) comes from `python -m evaluation --modes splade
--query-weight-mass / --query-weight-ratio / --two-phase-ratio` (docs/hybrid.md); the calibrated set has no
relevance judgements, so here the answer is compared with the exact top-k (overlap@k) instead.

Each query runs every configuration back to back (the order rotated per query so no configuration always
runs first on a cold cache), through the engine's scorer seam as the service scores (`Snapshot.search`; the
pruning and the two-phase rescoring inside the timed span). The whole pass is repeated `--repeats` times;
the ratios to the exact scorer are per pass, and their spread across passes is reported, because the
machines we measure on are shared and noisy. Data from ../shared/bench/synth_calibrated.py (benchmarks only).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is first on sys.path and its service.py benchmark would shadow the service package.
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

from bench.synthetic_collection import VOCAB_SIZE, load_calibrated  # noqa: E402
from engine import ServedIndex, SparseQuery, query_pruning, two_phase  # noqa: E402
from engine.index_format import IndexFormatError, open_index  # noqa: E402
from index_builder.csr_index import build_index_from_csr  # noqa: E402

# (label, kind, value): kind "exact" | "mass" | "ratio" | "two_phase"; the rows of docs/hybrid.md's SciFact table.
CONFIGS = [("exact, all terms", "exact", None),
           ("mass 0.9", "mass", 0.9), ("mass 0.8", "mass", 0.8), ("mass 0.7", "mass", 0.7), ("mass 0.6", "mass", 0.6),
           ("ratio 0.1", "ratio", 0.1), ("ratio 0.2", "ratio", 0.2), ("ratio 0.3", "ratio", 0.3),
           ("ratio 0.5", "ratio", 0.5),
           ("two-phase 0.1", "two_phase", 0.1), ("two-phase 0.3", "two_phase", 0.3),
           ("two-phase 0.5", "two_phase", 0.5)]


def weight_sorted(terms: np.ndarray, weights: np.ndarray, max_terms: int | None) -> SparseQuery:
    """The Searcher's query order (weight descending, ties to the lower term id), cut to `max_terms`."""
    order = np.lexsort((terms, -weights))
    return SparseQuery(terms[order].astype(np.int32), weights[order].astype(np.float32)).keep_heaviest(max_terms)


def run_config(snapshot, query: SparseQuery, kind: str, value: float | None, k: int):
    """(doc numbers, postings traversed, query terms scored) of one configuration, as a request would run it."""
    if kind == "two_phase":
        docs, _, stats, _ = two_phase.search(snapshot, query, k, value, None, None)
        return docs, int(stats.get("postings_traversed", 0)), int(stats["two_phase_terms"])
    pruned = query_pruning.prune(query, value if kind == "mass" else None, value if kind == "ratio" else None)
    top, _ = snapshot.search(pruned, k)
    return top.doc_numbers, top.postings_traversed, len(pruned)


def open_or_build(workdir: Path, folder: str, tag: str):
    """The index of docs_<tag>.npz, built once into `workdir` and reused by later runs."""
    path = workdir / f"calibrated-{tag}"
    collection = None
    try:
        index = open_index(path)
        print(f"reusing {path}", flush=True)
    except IndexFormatError:
        collection = load_calibrated(folder, tag)
        started = time.perf_counter()
        build_index_from_csr(path, collection.indptr, collection.term_ids, collection.weights, vocab_size=VOCAB_SIZE)
        print(f"built {path} in {time.perf_counter() - started:.1f} s", flush=True)
        index = open_index(path)
    queries = np.load(os.path.join(folder, "queries.npz"))
    return index, (queries["indptr"].astype(np.int64), queries["indices"].astype(np.int32),
                   queries["data"].astype(np.float32))


def bench(index, queries: list[SparseQuery], k: int, repeats: int) -> dict:
    served = ServedIndex(index)
    names = [label for label, _, _ in CONFIGS]
    with served.acquire() as snapshot:
        started = time.perf_counter()
        two_phase.forward_of(index)  # derived once per index on its first two-phase query: not a query's cost
        forward_s = time.perf_counter() - started
        for kind, value in {(kind, value) for _, kind, value in CONFIGS}:  # JIT and page warm-up, not timed
            for query in queries[:5]:
                run_config(snapshot, query, kind, value, k)
        times = np.zeros((repeats, len(CONFIGS), len(queries)))
        postings = np.zeros((len(CONFIGS), len(queries)))
        terms = np.zeros((len(CONFIGS), len(queries)))
        overlap = np.zeros((len(CONFIGS), len(queries)))
        for rep in range(repeats):
            for i, query in enumerate(queries):
                exact_docs = None
                for step in range(len(CONFIGS)):
                    c = (step + i + rep) % len(CONFIGS)
                    _, kind, value = CONFIGS[c]
                    t0 = time.perf_counter()
                    docs, traversed, kept = run_config(snapshot, query, kind, value, k)
                    times[rep, c, i] = time.perf_counter() - t0
                    if rep == 0:
                        postings[c, i], terms[c, i] = traversed, kept
                        overlap[c, i] = -1 if kind != "exact" else len(docs)
                        if kind == "exact":
                            exact_docs = docs
                        else:
                            overlap[c, i] = np.intersect1d(docs, exact_docs).size if exact_docs is not None else -1
            print(f"pass {rep + 1}/{repeats} done", flush=True)
        # Overlap for configurations that ran before exact in query i's rotation: recompute against exact.
        if np.any(overlap < 0):
            for i, query in enumerate(queries):
                exact_docs = run_config(snapshot, query, "exact", None, k)[0]
                for c, (_, kind, value) in enumerate(CONFIGS):
                    if overlap[c, i] < 0:
                        overlap[c, i] = np.intersect1d(run_config(snapshot, query, kind, value, k)[0],
                                                       exact_docs).size
    ms = times * 1000
    rows = []
    for c, name in enumerate(names):
        per_pass_mean = ms[:, c].mean(axis=1)
        ratios = per_pass_mean / ms[:, 0].mean(axis=1)
        p50_ratios = np.median(ms[:, c], axis=1) / np.median(ms[:, 0], axis=1)
        rows.append({"config": name, "mean_terms": float(terms[c].mean()), "mean_postings": float(postings[c].mean()),
                     f"overlap_at_{k}": float(overlap[c].sum() / max(1.0, overlap[0].sum())),
                     "mean_ms_per_pass": per_pass_mean.tolist(),
                     "p50_ms_per_pass": np.median(ms[:, c], axis=1).tolist(),
                     "p99_ms_per_pass": np.percentile(ms[:, c], 99, axis=1).tolist(),
                     "mean_ratio_per_pass": ratios.tolist(), "p50_ratio_per_pass": p50_ratios.tolist()})
    return {"k": k, "queries": len(queries), "repeats": repeats, "documents": index.num_documents,
            "postings": index.num_postings, "forward_index_s": forward_s, "rows": rows}


def spread(values: list[float], fmt: str) -> str:
    return (fmt.format(np.median(values)) + " (" + fmt.format(min(values)) + "-" + fmt.format(max(values)) + ")"
            if len(values) > 1 else fmt.format(values[0]))


def report(result: dict) -> str:
    k = result["k"]
    lines = [f"| k={k} | mean query terms | mean postings | overlap@{k} with exact | mean ms | p50 ms | p99 ms "
             "| mean / exact | p50 / exact |", "|" + "---|" * 9]
    for r in result["rows"]:
        lines.append(f"| {r['config']} | {r['mean_terms']:.1f} | {r['mean_postings']:,.0f} | {r[f'overlap_at_{k}']:.4f} "
                     f"| {spread(r['mean_ms_per_pass'], '{:.2f}')} | {spread(r['p50_ms_per_pass'], '{:.2f}')} "
                     f"| {spread(r['p99_ms_per_pass'], '{:.1f}')} | {spread(r['mean_ratio_per_pass'], '{:.2f}')} "
                     f"| {spread(r['p50_ratio_per_pass'], '{:.2f}')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrated", required=True, help="folder written by synth_calibrated.py")
    parser.add_argument("--tag", default="1M", help="docs_<tag>.npz to read (1M, 100k)")
    parser.add_argument("--queries", type=int, default=300, help="queries per pass (300)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the queries (3)")
    parser.add_argument("--k", type=int, nargs="+", default=[10], help="k values (10)")
    parser.add_argument("--max-terms", type=int, default=64, help="query terms kept before pruning (64, the "
                                                                  "SciFact table's)")
    parser.add_argument("--workdir", default="/tmp/bench-query-pruning", help="where the index is built and kept")
    parser.add_argument("--json", default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    index, (indptr, terms, weights) = open_or_build(workdir, args.calibrated, args.tag)
    queries = [weight_sorted(terms[indptr[i]:indptr[i + 1]], weights[indptr[i]:indptr[i + 1]], args.max_terms)
               for i in range(min(args.queries, len(indptr) - 1))]
    results = []
    for k in args.k:
        results.append(bench(index, queries, k, args.repeats))
        print(report(results[-1]), flush=True)
    print()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"calibrated-{args.tag}: {index.num_documents:,} documents, {index.num_postings:,} postings; "
          f"{len(queries)} queries x {args.repeats} passes, interleaved; CPU {cpu}, {os.cpu_count()} cores, "
          f"single-thread scoring; forward index derived in {results[0]['forward_index_s']:.1f} s (once per index); "
          "figures: median (min-max) over passes")
    for result in results:
        print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
