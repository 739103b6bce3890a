"""`python -m evaluation`: run every judged query of a BEIR collection through the engine's Searcher, score it.

    python -m evaluation --index data/indexes/scifact --model data/models/splade-tiny \
        --beir ../shared/data/scifact [--split test] [--query-max-terms N] [--run-file run.trec] [--json out.json]

Prints nDCG@10, RR@10 (MRR@10), R@100 and R@1000 (ir-measures) and the latency split: encoding per query (in
batches, as the service's micro-batcher does) and scoring per query (one thread, p50/mean/p99), with the
index's default scorer or `--scorer NAME`. The query path is the service's (engine.Searcher): what is
evaluated is what is served.

    python -m evaluation ... --modes splade,bm25,hybrid-rrf,hybrid-linear   every mode in one run (evaluation.modes)
    python -m evaluation ... --split train --tune-fusion                      the fusion grid (never on test)
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from engine import EngineError, Searcher
from evaluation.beir import EvaluationInputError
from engine.fusion import METHODS, NORMALIZATIONS, FusionSpec, parse_weights
from evaluation.modes import (MODE_NAMES, evaluate_modes, format_modes, format_tuning, parse_modes,
                              tune_fusion)
from evaluation.run import evaluate, format_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, type=Path, help="index directory")
    parser.add_argument("--model", required=True, type=Path, help="model artifact directory (query encoder)")
    parser.add_argument("--beir", required=True, type=Path, help="BEIR folder with queries.jsonl and qrels/")
    parser.add_argument("--split", default="test", help="qrels split (default: test)")
    parser.add_argument("--query-max-terms", type=int, default=None, help="keep the N highest-weighted query terms")
    parser.add_argument("--query-max-length", type=int, default=None,
                        help="query max length in tokens (default: the model manifest's, 64 for SPLADE-Tiny)")
    parser.add_argument("--depth", type=int, default=1000, help="documents retrieved per query (1000)")
    parser.add_argument("--batch-size", type=int, default=32, help="queries per encoder call (32)")
    parser.add_argument("--scorer", default=None, help="scorer name (default: the index's default scorer)")
    parser.add_argument("--run-file", type=Path, default=None, help="write the run in TREC format")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("--modes", default=None,
                        help="comma-separated query modes to report in one run: " + ", ".join(MODE_NAMES))
    parser.add_argument("--fusion", choices=METHODS, default=None, help="hybrid fusion (default: rrf)")
    parser.add_argument("--fusion-weights", default=None, help="hybrid weights, e.g. splade=1,bm25=0.5")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default=None, help="linear fusion normalization")
    parser.add_argument("--rank-constant", type=float, default=None, help="RRF rank constant (60)")
    parser.add_argument("--query-weight-mass", type=float, default=None,
                        help="query pruning: keep the heaviest terms holding this share of the weight (with --modes)")
    parser.add_argument("--query-weight-ratio", type=float, default=None,
                        help="query pruning: drop terms lighter than this ratio of the heaviest (with --modes)")
    parser.add_argument("--two-phase-ratio", type=float, default=None,
                        help="two-phase: candidates from terms >= ratio x heaviest, rescored with all (with --modes)")
    parser.add_argument("--tune-fusion", action="store_true",
                        help="report the fusion grid on --split (refused on the test split)")
    args = parser.parse_args(argv)
    for name in ("query_max_terms", "query_max_length", "depth", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    try:
        from models.errors import ModelError

        if args.tune_fusion and args.split == "test":
            raise EvaluationInputError("--tune-fusion: choose fusion settings on another split (e.g. --split train),"
                                       " never on the test queries")
        fusion = FusionSpec().with_overrides(
            args.fusion, parse_weights(args.fusion_weights) if args.fusion_weights else None, args.normalization,
            args.rank_constant).checked()
        modes = parse_modes(args.modes) if args.modes else None
        searcher = Searcher.from_paths(args.index, args.model, query_max_length=args.query_max_length,
                                       scorer=args.scorer, fusion=fusion)
        if args.tune_fusion:
            print(format_tuning(tune_fusion(searcher, args.beir, args.split, 10, args.query_max_terms,
                                            args.batch_size, args.scorer), args.split))
            return 0
        if modes:
            figures = evaluate_modes(searcher, args.beir, args.split, modes, args.depth, args.query_max_terms,
                                     args.batch_size, args.scorer, fusion, args.query_weight_mass,
                                     args.query_weight_ratio, args.two_phase_ratio)
            print(format_modes(figures))
            if args.json:
                args.json.write_text(json.dumps(asdict(figures), indent=1) + "\n", encoding="utf-8")
            return 0
        evaluation = evaluate(searcher, args.beir, args.split, args.depth, args.query_max_terms, args.batch_size,
                              args.run_file, args.scorer)
    except (EvaluationInputError, EngineError, ModelError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(evaluation))
    if args.json:
        args.json.write_text(json.dumps(asdict(evaluation), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
