"""Scorer benchmark: in one process and one run, query by query interleaved, the exact oracle (`score_exact`),
the cache-blocked exact scorer (with and without its 16-bit part), the approximate scorers (pruned rescoring;
optionally clustered blocks) at a few configurations and Seismic (`pyseismic-lsr`, the `bench` extra; imported
only here). k=10 and k=1000; mean / p50 / p99 ms, recall@k against the FLOAT exact ranking (no quantization),
build time, index size, resident memory. Engines run in a fresh random order for every query. Ratios are printed
against score_exact and against Seismic's fastest configuration with R@10 >= 0.99.

    python bench/scorers.py --calibrated /tmp/calibrated --tags 1M          # real-like set (synth_calibrated.py)
    python bench/scorers.py --synthetic light heavy --docs 1000000          # the project's generators
    python bench/scorers.py --calibrated /tmp/calibrated --tags 100k --queries 300
    python bench/scorers.py --calibrated /tmp/calibrated --tags 1M --impact-bits 16 \
        --clustered-configs 10:0.9 15:0.7 20:0.5                           # float-equivalent (uint16) scores
    python bench/scorers.py --calibrated /tmp/calibrated --tags 1M --impact-bits 16 --k 10 \
        --layouts 10:10 4:10 4:4 --clustered-configs 15:0.6 20:0.6        # block/cluster sizes in one run
    python bench/scorers.py --calibrated /tmp/calibrated --tags 1M --queries 300 --exact-only --no-seismic \
        --range-sizes 32768 --threads 1 2                                 # intra-query threads (latency only)

    python bench/scorers.py --calibrated /tmp/calibrated --tags 1M --impact-bits 16 --k 10 --separate-passes \
        --clustered-configs 15:0.6 15:0.6:4000                            # one pass an engine (fairer)
    python bench/scorers.py --calibrated /tmp/calibrated --tags 1M --impact-bits 16 --k 10 --separate-passes \
        --no-clustered --pruned-configs 10:0.8:300:1000000:0.3 1000:0.95:1700:0:0.1  # tiers, work cap

Timings drift on shared machines: read the ratios, measured in the same run. In one pass, configurations of the
same engine run each query one after another and warm the cache for each other (an engine with more
configurations gains more); `--separate-passes` runs each engine in its own pass beside `score_exact` and
rescales its times by `score_exact`'s drift between passes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

from bench.synthetic_collection import VOCAB_SIZE, Collection, generate, load_calibrated  # noqa: E402
from engine.kernels import blocked_exact, clustered, pruned_rescore  # noqa: E402
from index_builder.csr_index import build_index_from_csr  # noqa: E402
from engine.index_format import open_index  # noqa: E402

from engine.kernels.exact import score_exact  # noqa: E402

# pruned rescoring: (query_mass, candidates, max_postings) for each k
PRUNED_CONFIGS = {10: [(0.8, 300, 1_000_000, 0.3), (0.7, 300, 1_000_000, 0.0), (0.8, 300, 1_000_000, 0.0)],
                  1000: [(0.95, 1700, 0, 0.1), (0.95, 2000, 0, 0.1), (0.95, 2000, 0, 0.0)]}
CLUSTERED_CONFIGS = ((10, 1.0, 0), (10, 0.9, 0), (10, 0.8, 0), (10, 0.7, 0), (15, 0.8, 0), (20, 0.7, 0))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sorted_query(collection: Collection, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Weight-descending, ties to the lower term id: the Searcher's order."""
    terms, weights = collection.query(i)
    order = np.lexsort((terms, -weights))
    return terms[order].astype(np.int32), weights[order].astype(np.float32)


def float_reference(collection: Collection, queries, k: int) -> list[np.ndarray]:
    """Top-k by float32 weights (no quantization), ties to the lower document: the recall reference."""
    n = collection.num_documents
    term_major = sp.csr_matrix((collection.weights, collection.term_ids, collection.indptr),
                               shape=(n, VOCAB_SIZE)).T.tocsr()
    out = []
    for terms, weights in queries:
        q = sp.csr_matrix((weights, terms, np.array([0, len(terms)])), shape=(1, VOCAB_SIZE))
        row = q @ term_major
        scores, docs = row.data, row.indices
        if len(scores) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            scores, docs = scores[top], docs[top]
        out.append(docs[np.lexsort((docs, -scores))].astype(np.int64))
    return out


def summary(ms: list[float]) -> dict:
    a = np.asarray(ms) * 1000
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}


def recall(results, reference) -> float:
    hits = sum(len(np.intersect1d(a, b)) for a, b in zip(results, reference))
    return hits / max(1, sum(len(b) for b in reference))


class Seismic:
    def __init__(self, collection: Collection, n_postings: int, threads: int, saved: Path | None = None):
        """Built from the collection, or loaded from `saved` (a .index.seismic file) when it exists; a new build
        is saved there when `saved` is given."""
        from seismic import SeismicDataset, SeismicIndex, get_seismic_string
        self.string = get_seismic_string()
        if saved is not None and saved.exists():
            self.index = SeismicIndex.load(str(saved))
            return
        dataset = SeismicDataset()
        n = collection.num_documents
        dataset.add_documents_by_id([str(i) for i in range(n)], collection.term_ids.astype(np.int64),
                                    collection.weights.astype(np.float32), collection.indptr.astype(np.int64))
        self.index = SeismicIndex.build_from_dataset(dataset, n_postings=n_postings, centroid_fraction=0.1,
                                                     summary_energy=0.4, num_threads=threads)
        del dataset
        if saved is not None:
            self.index.save(str(saved).removesuffix(".index.seismic"))

    def query(self, terms, weights):
        return self.terms_as_strings(terms), weights.astype(np.float32)

    def terms_as_strings(self, terms):
        return np.array([str(t) for t in terms], dtype=self.string)

    def search(self, prepared, k, query_cut, heap_factor):
        components, values = prepared
        hits = self.index.search("q", components, values, k, query_cut, heap_factor)
        return np.array([int(h[2]) for h in hits], dtype=np.int64)


def bench_collection(name: str, collection: Collection, args, workdir: Path) -> dict:
    print(f"== {name}: {collection.num_documents:,} documents", flush=True)
    queries = [sorted_query(collection, i) for i in range(min(args.queries, collection.num_queries))]
    row: dict = {"name": name, "documents": collection.num_documents, "queries": len(queries), "engines": {},
                 "impact_bits": args.impact_bits}
    t0 = time.perf_counter()
    build_index_from_csr(workdir / name, collection.indptr, collection.term_ids, collection.weights,
                         vocab_size=VOCAB_SIZE, impact_bits=args.impact_bits)
    index = open_index(workdir / name)
    offsets, docs, impacts = np.asarray(index.offsets), np.asarray(index.doc_numbers), np.asarray(index.impacts)
    n, scale = index.num_documents, np.float32(index.scale)
    exact_bytes = offsets.nbytes + docs.nbytes + impacts.nbytes
    row["exact"] = {"build_s": time.perf_counter() - t0, "bytes": exact_bytes}
    print(f"exact index ({impacts.dtype.name} impacts) {exact_bytes / 2**20:.0f} MiB, built in "
          f"{row['exact']['build_s']:.1f} s", flush=True)

    t0 = time.perf_counter()
    reference = {k: float_reference(collection, queries, k) for k in args.k}
    print(f"float reference in {time.perf_counter() - t0:.1f} s", flush=True)

    engines = {}  # name -> (callable(query index, k) -> docs, build info)
    accumulator = np.zeros(n, dtype=np.float32)
    engines["score_exact"] = (lambda i, k: score_exact(offsets, docs, impacts, *queries[i], scale, k,
                                                       accumulator)[0], {"bytes": exact_bytes})
    local_docs = None
    for range_size in args.range_sizes:
        before, t0 = rss_mb(), time.perf_counter()
        ranges = blocked_exact.prepare_ranges(offsets, docs, n, range_size)
        info = {"build_s": time.perf_counter() - t0, "bytes": exact_bytes + ranges.nbytes,
                "rss_mb": rss_mb() - before}
        slice_acc = np.zeros(min(range_size, n), dtype=np.float32)
        engines[f"blocked R={range_size}"] = (
            lambda i, k, ranges=ranges, acc=slice_acc, r=range_size:
            blocked_exact.score_blocked(docs, impacts, ranges, r, n, *queries[i], scale, k, acc)[0], info)
        if range_size <= blocked_exact.MAX_LOCAL_RANGE_SIZE:  # with the 16-bit part (`add-parts exact-blocked`)
            if local_docs is None:
                local_docs = blocked_exact.local_doc_numbers(docs)
            info16 = {**info, "bytes": info["bytes"] + local_docs.nbytes}
            engines[f"blocked16 R={range_size}"] = (
                lambda i, k, ranges=ranges, acc=np.zeros_like(slice_acc), r=range_size:
                blocked_exact.score_blocked(local_docs, impacts, ranges, r, n, *queries[i], scale, k, acc)[0],
                info16)

    if args.threads:
        add_threaded_blocked(engines, args, queries, offsets, docs, local_docs, impacts, n, scale, exact_bytes)
    if not args.exact_only:
        add_approximate(engines, args, queries, offsets, docs, impacts, n, scale, collection, name)
    return run_interleaved(row, engines, queries, reference, args)


def add_threaded_blocked(engines, args, queries, offsets, docs, local_docs, impacts, n, scale, exact_bytes) -> None:
    """The blocked scorer with a query's ranges split between T threads (`--threads`), through the scorer's own
    path (engine.scorers.blocked.score_in_shares: shares balanced by postings, the process-wide pool, the merge).
    T threads keep T cores busy: a latency figure for idle cores, not a throughput one."""
    from engine.kernels.exact import NO_MASK
    from engine.scorers import intra_query
    from engine.scorers.blocked import score_in_shares

    intra_query.configure(max(args.threads))
    for range_size in args.range_sizes:
        ranges = blocked_exact.prepare_ranges(offsets, docs, n, range_size)
        forms = {"blocked": docs}
        if local_docs is not None and range_size <= blocked_exact.MAX_LOCAL_RANGE_SIZE:
            forms["blocked16"] = local_docs
        for form, form_docs in forms.items():
            for threads in [t for t in args.threads if t > 1]:  # one thread: the plain `blocked` engines
                accumulators = [np.zeros(min(range_size, n), dtype=np.float32) for _ in range(threads)]
                engines[f"{form} R={range_size} T={threads}"] = (
                    lambda i, k, d=form_docs, rs=ranges, r=range_size, t=threads, accs=accumulators:
                    score_in_shares(d, impacts, rs, np.int64(r), np.int64(n), *queries[i], scale, k, accs,
                                    NO_MASK, t)[0],
                    {"bytes": exact_bytes + ranges.nbytes + (0 if form_docs is docs else local_docs.nbytes),
                     "threads": threads})


def add_approximate(engines, args, queries, offsets, docs, impacts, n, scale, collection, name: str) -> None:
    if args.pruned:
        add_pruned(engines, args, queries, offsets, docs, impacts, n, scale)
    add_clustered_and_seismic(engines, args, queries, offsets, docs, impacts, n, scale, collection, name)


def add_pruned(engines, args, queries, offsets, docs, impacts, n, scale) -> None:
    before, t0 = rss_mb(), time.perf_counter()
    pruned = pruned_rescore.build_pruned(offsets, docs, impacts, n, n_postings=args.n_postings, tiers=args.tiers)
    info = {"build_s": time.perf_counter() - t0, "bytes": pruned.nbytes(), "rss_mb": rss_mb() - before,
            "n_postings": args.n_postings, "tiers": list(args.tiers)}
    print(f"pruned rescoring: {info['bytes'] / 2**20:.0f} MiB, built in {info['build_s']:.1f} s", flush=True)
    pruned_scratch = pruned_rescore.new_scratch(n, VOCAB_SIZE, pruned.range_size)
    for k in args.k:
        for mass, cand, cap, cut in (args.pruned_configs or {}).get(k, PRUNED_CONFIGS[k]):
            name = f"pruned mass={mass} C={cand}" + (f" cap={cap}" if cap else "") + f" tier_cut={cut}"
            engines[f"{name} k={k}"] = (
                lambda i, kk, mass=mass, cand=cand, cap=cap, cut=cut: pruned_rescore.search_pruned(
                    *pruned.arrays(), pruned.range_size, pruned.tiers, *queries[i], scale, kk,
                    pruned_rescore.QUERY_CUT_RANGE[1], np.float64(mass), cand, *pruned_scratch,
                    pruned_rescore.NO_MASK, cap, np.float64(pruned_rescore.DEFAULT_RANGE_QUOTA), np.float64(cut))[0],
                info)


def add_clustered_and_seismic(engines, args, queries, offsets, docs, impacts, n, scale, collection,
                              name: str) -> None:
    layouts = args.layouts or [(args.block_size, args.cluster_size)]
    blocks_scratch = clustered.new_scratch(n, VOCAB_SIZE) if args.clustered else None
    for block_size, cluster_size in layouts if args.clustered else []:
        before, t0 = rss_mb(), time.perf_counter()
        blocks = clustered.build_clustered(offsets, docs, impacts, n, n_postings=args.clustered_n_postings,
                                           max_fraction=args.max_fraction, block_size=block_size,
                                           summary_energy=args.summary_energy, summary_terms=args.summary_terms,
                                           cluster_size=cluster_size, threads=args.clustered_threads)
        info = {"build_s": time.perf_counter() - t0, "bytes": blocks.nbytes(), "rss_mb": rss_mb() - before,
                "threads": args.clustered_threads, "block_size": block_size, "cluster_size": cluster_size}
        label = "clustered" if len(layouts) == 1 else f"clustered b{block_size}/c{cluster_size}"
        print(f"{label}: {info['bytes'] / 2**20:.0f} MiB, built in {info['build_s']:.1f} s", flush=True)
        for qc, hf, cap in args.clustered_configs:
            engines[f"{label} qc={qc} hf={hf}" + (f" cap={cap}" if cap else "")] = (
                lambda i, k, qc=qc, hf=hf, cap=cap, blocks=blocks: clustered.search_clustered(
                    *blocks, *queries[i], scale, k, qc, np.float32(hf), *blocks_scratch, clustered.NO_MASK,
                    cap)[0], info)

    if args.seismic:
        before, t0 = rss_mb(), time.perf_counter()
        saved = build_record = None
        if args.seismic_cache:  # the build time of a cached index is the one recorded when it was built
            stem = f"{name}_p{args.seismic_n_postings}"
            saved = Path(args.seismic_cache) / f"{stem}.index.seismic"
            build_record = Path(args.seismic_cache) / f"{stem}.json"
            saved.parent.mkdir(parents=True, exist_ok=True)
        cached = saved is not None and saved.exists() and build_record.exists()
        seismic = Seismic(collection, args.seismic_n_postings, args.seismic_threads, saved)
        info = {"build_s": time.perf_counter() - t0, "rss_mb": rss_mb() - before,
                "n_postings": args.seismic_n_postings, "threads": args.seismic_threads}
        if cached:
            info.update(json.loads(build_record.read_text()), loaded_from=str(saved))
        elif build_record is not None:
            build_record.write_text(json.dumps({k: info[k] for k in ("build_s", "rss_mb", "threads")}))
        info["bytes"] = info["rss_mb"] * 2**20
        print(f"seismic: ~{info['rss_mb']:.0f} MiB resident, built in {info['build_s']:.1f} s", flush=True)
        prepared = [seismic.query(*q) for q in queries]
        for qc, hf in ((5, 1.0), (10, 1.0), (10, 0.9), (15, 1.0), (20, 1.0), (20, 0.9), (30, 1.0)):
            engines[f"seismic qc={qc} hf={hf}"] = (
                lambda i, k, qc=qc, hf=hf: seismic.search(prepared[i], k, qc, hf), info)



def run_interleaved(row: dict, engines: dict, queries, reference, args) -> dict:
    for k in args.k:
        names = [e for e in engines if not e.startswith("pruned") or e.endswith(f"k={k}")]
        for e in names:  # JIT compilation and page warm-up, not timed
            for i in range(min(5, len(queries))):
                engines[e][0](i, k)
        times = {e: [] for e in names}
        order = np.random.default_rng(k)
        results = {e: [] for e in names}
        # One pass with every engine, or (--separate-passes) one pass an engine with score_exact beside it.
        passes = [[e for e in names if e != "score_exact"][j:j + 1] + ["score_exact"]
                  for j in range(len(names) - 1)] if args.separate_passes and len(names) > 1 else [names]
        exact_means = []
        for members in passes:
            pass_times = {e: [] for e in members}
            for i in range(len(queries)):
                # A fresh random order per query: an engine that runs right after another reading the same
                # postings finds them in cache, so a fixed (or merely alternating) order favours some engines.
                for e in [members[j] for j in order.permutation(len(members))]:
                    t0 = time.perf_counter()
                    found = engines[e][0](i, k)
                    pass_times[e].append(time.perf_counter() - t0)
                    if len(results[e]) < len(queries):  # score_exact: its first pass
                        results[e].append(found)
            exact_means.append(float(np.mean(pass_times["score_exact"])))
            for e in members:
                times[e].extend(pass_times[e])
            if len(passes) > 1:  # in score_exact's mean over all passes: drift between passes cancels
                times[members[0]] = list(np.asarray(times[members[0]]) / exact_means[-1])
        if len(passes) > 1:
            overall = float(np.mean(times["score_exact"]))
            for e in names:
                if e != "score_exact":
                    times[e] = list(np.asarray(times[e]) * overall)
        for e in names:
            entry = row["engines"].setdefault(e.replace(f" k={k}", ""), {"build": engines[e][1]})
            entry[f"k{k}"] = {**summary(times[e]), "recall": recall(results[e], reference[k])}
        print(report_k(row, k), flush=True)
    return row


def report_k(row: dict, k: int) -> str:
    engines = {e: v for e, v in row["engines"].items() if f"k{k}" in v}
    base = engines["score_exact"][f"k{k}"]
    seismic_ok = [v[f"k{k}"] for e, v in engines.items() if e.startswith("seismic") and v[f"k{k}"]["recall"] >= 0.99]
    best_seismic = min(seismic_ok, key=lambda m: m["mean"]) if seismic_ok else None
    lines = [f"### {row['name']}, k={k} ({row['queries']} queries)", "",
             f"| engine | mean / p50 / p99 ms | R@{k} vs float | mean, p99 vs score_exact "
             f"| mean, p99 vs Seismic best R@{k}>=0.99 | size vs exact index | build s |",
             "|---|---|---|---|---|---|---|"]
    for e, v in engines.items():
        m, b = v[f"k{k}"], v["build"]
        build_s = b.get("build_s", row["exact"]["build_s"])
        built = f"{build_s:.1f}" + (f" ({b['threads']} threads)" if "build_s" in b and "threads" in b else "")
        vs_seismic = f"{m['mean'] / best_seismic['mean']:.2f}x, {m['p99'] / best_seismic['p99']:.2f}x" \
            if best_seismic else "n/a"
        lines.append(f"| {e} | {m['mean']:.2f} / {m['p50']:.2f} / {m['p99']:.2f} | {m['recall']:.4f} "
                     f"| {m['mean'] / base['mean']:.2f}x, {m['p99'] / base['p99']:.2f}x | {vs_seismic} "
                     f"| {b.get('bytes', 0) / row['exact']['bytes']:.2f}x | {built} |")
    return "\n".join(lines)


def _layout(text: str) -> tuple[int, int]:
    block, cluster = text.split(":")
    return int(block), int(cluster)


def _config(text: str) -> tuple[int, float, int]:
    """query_cut:heap_factor[:max_documents] (0 or absent: no cap)."""
    cut, factor, *cap = text.split(":")
    return int(cut), float(factor), int(cap[0]) if cap else 0


def _pruned_configs(text: str) -> tuple[int, float, int, int, float]:
    """k:query_mass:candidates[:max_postings[:tier_cut]] (max_postings 0 or absent: no cap; tier_cut absent: the
    default)"""
    k, mass, candidates, *rest = text.split(":")
    cap = int(rest[0]) if rest else 0
    cut = float(rest[1]) if len(rest) > 1 else pruned_rescore.DEFAULT_TIER_CUT
    return int(k), float(mass), int(candidates), cap, cut


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrated", help="folder written by ../shared/bench/synth_calibrated.py")
    parser.add_argument("--tags", nargs="*", default=["1M"], help="calibrated sizes to run (docs_<tag>.npz)")
    parser.add_argument("--synthetic", nargs="*", default=[], choices=["light", "heavy"])
    parser.add_argument("--docs", type=int, default=1_000_000, help="synthetic collection size")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, nargs="*", default=[10, 1000], choices=[10, 1000])
    parser.add_argument("--range-sizes", type=int, nargs="*", default=[32768, 65536])
    parser.add_argument("--n-postings", type=int, default=pruned_rescore.DEFAULT_N_POSTINGS,
                        help="pruned rescoring: postings kept per term")
    parser.add_argument("--tiers", type=int, nargs="*", default=list(pruned_rescore.DEFAULT_TIERS),
                        help="pruned rescoring: where the lower impact tiers start (none: one tier)")
    parser.add_argument("--pruned-configs", type=_pruned_configs, nargs="*", default=None,
                        metavar="K:MASS:CANDIDATES[:MAX_POSTINGS[:TIER_CUT]]",
                        help="pruned rescoring configurations (default: PRUNED_CONFIGS)")
    parser.add_argument("--no-pruned", dest="pruned", action="store_false")
    parser.add_argument("--no-clustered", dest="clustered", action="store_false",
                        help="skip the clustered-blocks scorer")
    parser.add_argument("--clustered-n-postings", type=int, default=clustered.DEFAULT_N_POSTINGS)
    parser.add_argument("--max-fraction", type=float, default=clustered.DEFAULT_MAX_FRACTION)
    parser.add_argument("--clustered-threads", type=int, default=2, help="build threads (Seismic's: --seismic-threads)")
    parser.add_argument("--clustered-configs", type=_config, nargs="*", default=list(CLUSTERED_CONFIGS),
                        help="query_cut:heap_factor[:max_documents] configurations of the clustered scorer")
    parser.add_argument("--impact-bits", type=int, choices=[8, 16], default=8,
                        help="the index's impacts: 16 keeps scores float-equivalent")
    parser.add_argument("--block-size", type=int, default=clustered.DEFAULT_BLOCK_SIZE)
    parser.add_argument("--cluster-size", type=int, default=clustered.DEFAULT_CLUSTER_SIZE)
    parser.add_argument("--layouts", type=_layout, nargs="*", default=None, metavar="BLOCK:CLUSTER",
                        help="several clustered parts in one run (block_size:cluster_size each; all kept in memory)")
    parser.add_argument("--summary-energy", type=float, default=clustered.DEFAULT_SUMMARY_ENERGY)
    parser.add_argument("--summary-terms", type=int, default=clustered.DEFAULT_SUMMARY_TERMS)
    parser.add_argument("--no-seismic", dest="seismic", action="store_false")
    parser.add_argument("--exact-only", action="store_true", help="only the exact scorers (no approximate builds)")
    parser.add_argument("--seismic-n-postings", type=int, default=2000)
    parser.add_argument("--seismic-threads", type=int, default=2)
    parser.add_argument("--seismic-cache", help="folder to save Seismic's index in and load it from on later runs "
                                                "(its recorded build time and resident growth are reported)")
    parser.add_argument("--threads", type=int, nargs="*", default=[],
                        help="also the blocked scorers with each query split between this many threads (1 is the "
                        "plain blocked engines; e.g. 2 4)")
    parser.add_argument("--separate-passes", action="store_true",
                        help="one pass over the queries for each engine, with score_exact beside it, instead of "
                             "all engines in one pass (there, configurations of the same engine run the same "
                             "query one after another and warm the cache for each other); each engine's times "
                             "are rescaled by score_exact's mean over all passes / its mean in that pass")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.pruned_configs is not None:  # k -> [(mass, candidates, max_postings, tier_cut)]
        by_k: dict[int, list] = {}
        for k, mass, candidates, cap, cut in args.pruned_configs:
            by_k.setdefault(k, []).append((mass, candidates, cap, cut))
        args.pruned_configs = by_k
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scorers-") as tmp:
        if args.calibrated:
            for tag in args.tags:
                rows.append(bench_collection(f"calibrated-{tag}", load_calibrated(args.calibrated, tag), args,
                                             Path(tmp)))
        for profile in args.synthetic:
            rows.append(bench_collection(f"{profile}-{args.docs}", generate(args.docs, args.queries, profile),
                                         args, Path(tmp)))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown")
    result = {"cpu": cpu, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
              "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"CPU: {cpu}, {os.cpu_count()} cores, {result['date']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
