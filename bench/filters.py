"""Metadata filter benchmark: the cost of writing the metadata part, of evaluating a filter to a mask, and of a
filtered exact search at several selectivities, against the unfiltered search measured in the same run (read
the ratios: the machine may be shared).

    python bench/filters.py                       # 1M synthetic documents (40 terms each), 200 queries
    python bench/filters.py --docs 200000         # quicker
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is first on sys.path and its service.py benchmark would shadow the service package.
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

from bench.synthetic_collection import VOCAB_SIZE, Profile, generate  # noqa: E402
from engine import ServedIndex, SparseQuery, filters  # noqa: E402
from engine import metadata as md  # noqa: E402
from engine.index_format import open_index  # noqa: E402
from index_builder.csr_index import build_index_from_csr  # noqa: E402

LANGS = ["en", "de", "fr", "es"]
FILTERS = {
    "bucket < 5000 (50%)": {"bucket": {"lt": 5000}},
    "bucket < 500 (5%)": {"bucket": {"lt": 500}},
    "bucket < 50 (0.5%)": {"bucket": {"lt": 50}},
    "bucket == 7 (0.01%)": {"bucket": 7},
    "lang == en (25%)": {"lang": "en"},
    "tags contains t3 (~20%)": {"tags": "t3"},
    "and of 3 (~2.5%)": {"and": [{"lang": "en"}, {"bucket": {"lt": 5000}}, {"tags": "t3"}]},
}


def cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor()


def metadata_rows(count: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    buckets = rng.integers(0, 10_000, size=count).tolist()
    langs = rng.integers(0, len(LANGS), size=count).tolist()
    tags = rng.integers(0, 10, size=(count, 2)).tolist()
    return [{"bucket": b, "lang": LANGS[lang], "tags": [f"t{x}" for x in set(t)]}
            for b, lang, t in zip(buckets, langs, tags)]


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1e3)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)

    collection = generate(args.docs, args.queries, Profile("filters", terms_per_doc=40, query_exponent=0.5))
    rows = metadata_rows(args.docs)
    report: dict = {"cpu": cpu(), "documents": args.docs, "queries": args.queries, "k": args.k}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        writer = md.MetadataWriter(Path(tmp) / "scratch")
        for i, row in enumerate(rows):
            writer.add(str(i), row)
        part_dir = Path(tmp) / "part"
        part_dir.mkdir()
        writer.write(part_dir)
        report["metadata_part_docs_per_s"] = round(args.docs / (time.perf_counter() - started))
        build_index_from_csr(Path(tmp) / "index", collection.indptr, collection.term_ids, collection.weights,
                             vocab_size=VOCAB_SIZE, metadata=rows)
        del rows
        index = open_index(Path(tmp) / "index")
        snapshot = ServedIndex(index).current
        queries = [SparseQuery(*collection.query(i)) for i in range(args.queries)]

        def search_all(allowed):
            for query in queries:
                snapshot.search(query, args.k, "exact", None, allowed)

        search_all(None)  # compile and page in
        base = float(np.mean(timed(lambda: search_all(None), 3))) / args.queries
        report["unfiltered_ms"] = round(base, 3)
        all_pass = np.ones(index.num_documents, dtype=bool)
        search_all(all_pass)
        report["all_pass_mask_ms"] = round(float(np.mean(timed(lambda: search_all(all_pass), 3))) / args.queries, 3)
        report["all_pass_ratio"] = round(report["all_pass_mask_ms"] / base, 2)
        report["filters"] = {}
        for name, filter_json in FILTERS.items():
            node = filters.parse(filter_json)
            mask = filters.mask(node, index)
            mask_ms = float(np.median(timed(lambda: filters.mask(node, index), 10)))
            search_all(mask)
            search_ms = float(np.mean(timed(lambda: search_all(mask), 3))) / args.queries
            report["filters"][name] = {"allowed": int(mask.sum()), "mask_ms": round(mask_ms, 2),
                                       "search_ms": round(search_ms, 3),
                                       "search_ratio": round(search_ms / base, 2),
                                       "with_mask_ratio": round((search_ms + mask_ms) / base, 2)}
        index.close()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
