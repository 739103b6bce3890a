r"""`python -m index_builder tune`: find the fastest configuration of an approximate scorer that meets a recall
target on sample queries, and record it in the index manifest as a named configuration.

    python -m index_builder tune --index data/indexes/scifact --model data/models/splade-tiny \
        --queries ../shared/data/scifact --scorer clustered --k 10 --target-recall 0.99 [--sample 400]

Queries: a BEIR folder (its queries.jsonl), a .jsonl of {"text": ...} (or {"query": ...}), or a text file with
one query per line. They are encoded with the model's query encoder (as the service encodes them), shuffled
with a fixed seed and split in two: one half chooses the configuration, the other re-measures it. The result
(e.g. `recall99_k10`: scorer, options, the recall re-measured on held-out queries, latency) goes into the
manifest's `configs` and, unless --no-default, becomes the index's default scorer, so the service serves it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from engine import scorers
from engine.index_format import add_parts, open_index
from engine.query import SparseQuery
from engine.tuning import config_name, tune


def read_query_texts(path: Path) -> list[str]:
    source = path / "queries.jsonl" if path.is_dir() else path
    if not source.is_file():
        raise ValueError(f"{source}: no queries (give a BEIR folder, a .jsonl or a one-query-per-line file)")
    texts = []
    with open(source, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if source.suffix == ".jsonl":
                try:
                    record = json.loads(line)
                    texts.append(str(record.get("text") or record.get("query") or ""))
                except (ValueError, AttributeError) as exc:
                    raise ValueError(f"{source}:{lineno}: expected a JSON object with 'text' ({exc})") from None
            else:
                texts.append(line.strip())
    texts = [t for t in texts if t.strip()]
    if len(texts) < 4:
        raise ValueError(f"{source}: {len(texts)} queries; tuning needs at least 4 (2 to choose, 2 to check)")
    return texts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, type=Path, help="index directory (its parts must serve --scorer)")
    parser.add_argument("--model", required=True, type=Path, help="model artifact (query encoder)")
    parser.add_argument("--queries", required=True, type=Path, help="BEIR folder, .jsonl or .txt of sample queries")
    parser.add_argument("--scorer", required=True, help="the approximate scorer to tune")
    parser.add_argument("--k", type=int, default=10, help="hits per query the target is about (10)")
    parser.add_argument("--target-recall", type=float, default=0.99, help="recall@k against exact (0.99)")
    parser.add_argument("--sample", type=int, default=400, help="queries used at most, half to choose (400)")
    parser.add_argument("--max-terms", type=int, default=64, help="query terms kept, as the service (64)")
    parser.add_argument("--name", default=None, help="configuration name (default: recall<target>_k<k>)")
    parser.add_argument("--no-default", action="store_true", help="record it without making it the default")


def run(args: argparse.Namespace) -> int:
    from models.runtime import RuntimeOptions, load_query_encoder

    if not 0 < args.target_recall <= 1:
        raise ValueError(f"--target-recall must be in (0, 1], got {args.target_recall}")
    if args.k < 1 or args.sample < 4 or args.max_terms < 1:
        raise ValueError("--k and --max-terms must be >= 1 and --sample >= 4")
    index = open_index(args.index)
    scorer_cls = scorers.scorer_class(args.scorer, index, field="--scorer")
    texts = read_query_texts(args.queries)
    order = np.random.default_rng(0).permutation(len(texts))[: args.sample]
    encoder = load_query_encoder(args.model, RuntimeOptions(device="cpu"))
    if encoder.tokenizer_sha256 != index.tokenizer_sha256:
        raise ValueError(f"{args.model} does not share the index's tokenizer: its queries would be meaningless here")
    encoded = encoder.encode([texts[i] for i in order], args.max_terms)
    queries = [SparseQuery(np.asarray(ids, np.int32), np.asarray(w, np.float32)) for ids, w in encoded]
    half = len(queries) // 2

    def show(m):
        print(f"  {json.dumps(m.options, sort_keys=True)}: recall@{args.k} {m.recall:.4f}, mean {m.mean_ms:.3f} ms, "
              f"p99 {m.p99_ms:.3f} ms", flush=True)

    print(f"tuning {args.scorer} on {half} queries for recall@{args.k} >= {args.target_recall}")
    config, _ = tune(index, scorer_cls, queries[:half], queries[half:], args.k, args.target_recall, progress=show)
    name = args.name or config_name(args.target_recall, args.k)
    configs = {**{n: c.model_dump(mode="json") for n, c in index.typed_manifest.configs.items()},
               name: config.model_dump(mode="json")}
    updates = {"configs": configs} if args.no_default else {"configs": configs, "default_scorer": name}
    index.close()
    add_parts(args.index, [], manifest_updates=updates)
    print(f"recorded {name}: {config.scorer} {json.dumps(config.options, sort_keys=True)}, recall@{args.k} "
          f"{config.measured_recall:.4f} on {config.queries} held-out queries, mean {config.mean_ms:.3f} ms "
          f"(exact {config.exact_mean_ms:.3f} ms){'' if args.no_default else '; now the default scorer'}")
    return 0
