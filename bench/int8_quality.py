"""What the int8 query encoder costs on SciFact, through the engine's one query path (what the service runs):
nDCG@10 / R@100 of fp32 and int8 query encoders over the same index, the top-10 retrieved-set overlap per
query, and the encode time per query of each (measured in the same run: compare the ratio).

    python bench/int8_quality.py --index data/indexes/scifact --model data/models/splade-tiny \\
        --beir ../shared/data/scifact [--json reports/int8-quality.json]

The model directory must hold query.int8.onnx (`python -m models fetch-default --out DIR --int8`).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT / "bench"]

from engine import Searcher  # noqa: E402
from evaluation.run import evaluate  # noqa: E402
from models.runtime import RuntimeOptions  # noqa: E402


def read_run(path: Path, depth: int = 10) -> dict[str, list[str]]:
    run: dict[str, list[tuple[int, str]]] = {}
    for line in path.read_text().splitlines():
        query_id, _, doc_id, rank, _score, _tag = line.split()
        run.setdefault(query_id, []).append((int(rank), doc_id))
    return {q: [d for _, d in sorted(rows)[:depth]] for q, rows in run.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--beir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report, runs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant, int8 in (("fp32", False), ("int8", True)):
            options = RuntimeOptions(device="cpu", intra_op_threads=args.threads, use_int8=int8)
            searcher = Searcher.from_paths(args.index, args.model, options, max_query_terms=64)
            searcher.warm_up()
            run_file = Path(tmp) / f"{variant}.trec"
            result = evaluate(searcher, args.beir, run_file=run_file)
            report[variant] = {"metrics": result.metrics, "encode_ms_per_query": result.encode_ms_per_query,
                               "queries": result.queries}
            runs[variant] = read_run(run_file)
    overlaps = [len(set(runs["fp32"][q]) & set(runs["int8"].get(q, []))) / max(1, len(runs["fp32"][q]))
                for q in runs["fp32"]]
    report["top10_retrieved_overlap"] = sum(overlaps) / len(overlaps)
    report["encode_speedup_int8"] = report["fp32"]["encode_ms_per_query"] / report["int8"]["encode_ms_per_query"]
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
