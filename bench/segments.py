"""Segmented-index benchmark: search latency over 1, 10 and 50 segments against the merged index, in one run with
queries interleaved, and add throughput (documents/s) of the writer: the vectors path (pre-encoded documents,
IndexWriter.add + commit) and, with --model and --text-corpus, the text path (`python -m index_builder add`,
encoding included).

    python bench/segments.py --docs 100000 --queries 300
    python bench/segments.py --docs 100000 --model data/models/splade-tiny --text-corpus ../shared/data/scifact

Every configuration holds the same documents; the merged index is a from-scratch build with the index's scale,
so all of them return the same ranking (checked on every query). Timings drift on shared machines: read the
ratios against the merged index, measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

from bench.synthetic_collection import VOCAB_SIZE, generate  # noqa: E402
from engine.index_format import open_index  # noqa: E402
from engine.lifecycle import IndexWriter, NewDocument  # noqa: E402
from engine.merge_policy import LogMergePolicy  # noqa: E402
from engine.query import SparseQuery  # noqa: E402
from engine.segments import open_generation  # noqa: E402
from engine.snapshot import ServedIndex  # noqa: E402
from index_builder.csr_index import build_index_from_csr  # noqa: E402

NO_MERGES = LogMergePolicy(merge_factor=1_000_000)


def documents(collection, lo: int, hi: int) -> list[NewDocument]:
    out = []
    for i in range(lo, hi):
        a, b = collection.indptr[i], collection.indptr[i + 1]
        out.append(NewDocument(f"d{i}", collection.term_ids[a:b], collection.weights[a:b]))
    return out


def build_plain(path: Path, collection, lo: int, hi: int, impact_scale: float | None = None) -> None:
    indptr = collection.indptr[lo:hi + 1] - collection.indptr[lo]
    a, b = collection.indptr[lo], collection.indptr[hi]
    build_index_from_csr(path, indptr, collection.term_ids[a:b], collection.weights[a:b], vocab_size=VOCAB_SIZE,
                         ids=[f"d{i}" for i in range(lo, hi)], impact_scale=impact_scale)


def segmented(path: Path, collection, segments: int, scale: float) -> float:
    """An index of the collection in `segments` segments (a base build, then adds); returns add docs/s."""
    n = len(collection.indptr) - 1
    bounds = np.linspace(0, n, segments + 1).astype(int)
    build_plain(path, collection, 0, int(bounds[1]), impact_scale=scale)
    started, added = time.perf_counter(), 0
    with IndexWriter(path, merge_policy=NO_MERGES, memory_budget_mb=1024) as writer:
        for lo, hi in zip(bounds[1:-1], bounds[2:]):
            writer.add(documents(collection, int(lo), int(hi)))
            writer.commit()
            added += int(hi - lo)
    return added / (time.perf_counter() - started) if added else float("nan")


def latency(served: dict[str, ServedIndex], queries: list[SparseQuery], k: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in served}
    reference = next(iter(served))
    for query in queries:
        answers = {}
        for name, index in served.items():  # interleaved: drift hits every configuration alike
            with index.acquire() as snapshot:
                t0 = time.perf_counter()
                top, _ = snapshot.search(query, k, "exact")
                times[name].append((time.perf_counter() - t0) * 1e3)
                answers[name] = (snapshot.index.external_ids(top.doc_numbers), top.scores.tobytes())
        for name, answer in answers.items():
            assert answer == answers[reference], f"{name} ranks differently from {reference}"
    return times


def text_add_throughput(model: Path, corpus: Path, tmp: Path, count: int, base_docs: int = 100) -> float:
    """`python -m index_builder add` of `count` texts to an index of `base_docs` texts built with the model
    (process start and model load included: what an operator waits for)."""
    from index_builder.corpus import corpus_file

    lines = []
    with open(corpus_file(corpus), encoding="utf-8") as handle:
        for line in handle:
            lines.append(line)
            if len(lines) >= base_docs + count:
                break
    (tmp / "text-base.jsonl").write_text("".join(lines[:base_docs]), encoding="utf-8")
    (tmp / "text-add.jsonl").write_text("".join(lines[base_docs:]), encoding="utf-8")
    target = tmp / "text-index"
    subprocess.run([sys.executable, "-m", "index_builder", "build", "--model", str(model), "--corpus",
                    str(tmp / "text-base.jsonl"), "--out", str(target), "--no-progress"], cwd=REPO_ROOT, check=True,
                   capture_output=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "index_builder", "add", "--index", str(target), "--model", str(model),
                    "--corpus", str(tmp / "text-add.jsonl"), "--no-progress", "--no-merge"], cwd=REPO_ROOT,
                   check=True, capture_output=True)
    return (len(lines) - base_docs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--segments", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--text-corpus", type=Path, default=None)
    parser.add_argument("--text-docs", type=int, default=500)
    args = parser.parse_args()
    collection = generate(args.docs, num_queries=args.queries, profile="light", seed=0)
    queries = []
    for i in range(args.queries):
        terms, weights = collection.query(i)
        order = np.lexsort((terms, -weights))
        queries.append(SparseQuery(terms[order].astype(np.int32), weights[order].astype(np.float32)))
    results: dict = {"documents": args.docs, "queries": args.queries, "k": args.k}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        served: dict[str, ServedIndex] = {}
        add_rates = {}
        scale = float(collection.weights.max()) / 255  # one scale for every configuration: same impacts
        for count in sorted(args.segments):
            path = tmp / f"seg{count}"
            add_rates[count] = segmented(path, collection, count, scale)
            generation = open_generation(path)
            served[f"{count} segments"] = ServedIndex(generation)
        build_plain(tmp / "merged", collection, 0, args.docs, impact_scale=scale)
        served = {"merged": ServedIndex(open_index(tmp / "merged")), **served}
        latency(served, queries[:20], args.k)  # warm-up: compile, fault the pages in
        times = latency(served, queries, args.k)
        base = float(np.mean(times["merged"]))
        results["latency_ms"] = {name: {"mean": round(float(np.mean(t)), 3), "p50": round(float(np.median(t)), 3),
                                        "p99": round(float(np.percentile(t, 99)), 3),
                                        "vs_merged": round(float(np.mean(t)) / base, 2)} for name, t in times.items()}
        results["vectors_add_docs_per_s"] = {f"{c} segments": round(r) for c, r in add_rates.items() if c > 1}
        if args.model and args.text_corpus:
            results["text_add_docs_per_s"] = round(text_add_throughput(args.model, args.text_corpus, tmp,
                                                                       args.text_docs), 1)
            results["text_add_docs"] = args.text_docs
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
