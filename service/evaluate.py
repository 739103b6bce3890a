"""`python -m service.evaluate`: run every judged query of a BEIR collection through the Searcher and score it.

    python -m service.evaluate --index data/indexes/scifact --model data/models/splade-tiny \
        --beir ../shared/data/scifact [--split test] [--query-max-terms N] [--run-file run.trec] [--json out.json]

Prints nDCG@10, RR@10 (MRR@10), R@100 and R@1000 (ir-measures) and the latency split: encoding per query (in
batches, as the service's micro-batcher does) and exact scoring per query (one thread, p50/mean/p99).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from service.searcher import IncompatibleArtifactsError, Searcher

MEASURES = ("nDCG@10", "RR@10", "R@100", "R@1000")


class EvaluationInputError(ValueError):
    """A BEIR folder missing its queries or qrels, or with malformed lines."""


@dataclass
class Evaluation:
    metrics: dict[str, float]
    queries: int
    depth: int
    query_max_terms: int | None
    query_max_length: int
    mean_query_terms: float
    mean_postings: float
    encode_ms_per_query: float
    score_ms_p50: float
    score_ms_mean: float
    score_ms_p99: float
    index: dict


def read_qrels(folder: Path, split: str) -> dict[str, dict[str, int]]:
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise EvaluationInputError(f"{path}: qrels for split {split!r} not found")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for lineno, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if not row or (lineno == 1 and row[0] == "query-id"):
                continue
            if len(row) != 3:
                raise EvaluationInputError(f"{path}:{lineno}: expected query-id, corpus-id, score")
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except ValueError as exc:
                raise EvaluationInputError(f"{path}:{lineno}: score {row[2]!r} is not an integer") from exc
    return qrels


def read_queries(folder: Path, wanted: set[str]) -> dict[str, str]:
    path = folder / "queries.jsonl"
    if not path.is_file():
        raise EvaluationInputError(f"{path}: not found")
    queries: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                query_id, text = str(record["_id"]), record["text"]
            except (ValueError, KeyError, TypeError) as exc:
                raise EvaluationInputError(f"{path}:{lineno}: expected {{'_id', 'text'}} ({exc})") from exc
            if query_id in wanted:
                queries[query_id] = text
    missing = wanted - queries.keys()
    if missing:
        raise EvaluationInputError(f"{path}: {len(missing)} judged queries have no text (e.g. {sorted(missing)[0]!r})")
    return queries


def evaluate(searcher: Searcher, beir_folder: Path, split: str = "test", depth: int = 1000,
             query_max_terms: int | None = None, batch_size: int = 32,
             run_file: Path | None = None) -> Evaluation:
    import ir_measures

    qrels = read_qrels(beir_folder, split)
    queries = read_queries(beir_folder, set(qrels))
    query_ids = sorted(queries, key=lambda q: (len(q), q))
    run: dict[str, dict[str, float]] = {}
    encode_seconds = 0.0
    score_seconds, terms, postings = [], [], []
    for start in range(0, len(query_ids), batch_size):
        ids = query_ids[start:start + batch_size]
        t0 = time.perf_counter()
        encoded = searcher.encode_tokenized(searcher.tokenize([queries[q] for q in ids]), query_max_terms)
        encode_seconds += time.perf_counter() - t0
        for query_id, query in zip(ids, encoded):
            t1 = time.perf_counter()
            hits, traversed = searcher.score(query, k=depth)
            score_seconds.append(time.perf_counter() - t1)
            terms.append(len(query.term_ids))
            postings.append(traversed)
            run[query_id] = {hit.id: float(hit.score) for hit in hits}
    if run_file is not None:
        write_trec_run(run, Path(run_file))
    measures = [ir_measures.parse_measure(name) for name in MEASURES]
    results = ir_measures.calc_aggregate(measures, qrels, run)
    metrics = {name: float(results[measure]) for name, measure in zip(MEASURES, measures)}
    score_ms = np.array(score_seconds) * 1000
    return Evaluation(
        metrics=metrics, queries=len(query_ids), depth=depth,
        query_max_terms=searcher.resolve_max_terms(query_max_terms),
        query_max_length=int(searcher.encoder.max_length),
        mean_query_terms=float(np.mean(terms)), mean_postings=float(np.mean(postings)),
        encode_ms_per_query=encode_seconds * 1000 / len(query_ids),
        score_ms_p50=float(np.percentile(score_ms, 50)), score_ms_mean=float(score_ms.mean()),
        score_ms_p99=float(np.percentile(score_ms, 99)),
        index={"path": str(searcher.index.path), "documents": searcher.index.num_documents,
               "postings": searcher.index.num_postings, "doc_max_terms": searcher.index.manifest.get("doc_max_terms"),
               "document_max_length": searcher.index.manifest.get("document_max_length"),
               "impacts": searcher.index.impacts.dtype.name},
    )


def write_trec_run(run: dict[str, dict[str, float]], path: Path, tag: str = "splade-serve") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for query_id in sorted(run):
            ranked = sorted(run[query_id].items(), key=lambda item: -item[1])
            for rank, (doc_id, score) in enumerate(ranked, 1):
                handle.write(f"{query_id} Q0 {doc_id} {rank} {score:.6f} {tag}\n")


def format_report(evaluation: Evaluation) -> str:
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in evaluation.metrics.items()]
    lines += [
        "",
        f"queries {evaluation.queries}, top-{evaluation.depth}, query max length {evaluation.query_max_length} "
        f"tokens, query max terms {evaluation.query_max_terms}, mean query terms {evaluation.mean_query_terms:.1f}, "
        f"mean postings traversed {evaluation.mean_postings:.0f}",
        f"latency per query: encode {evaluation.encode_ms_per_query:.2f} ms (batched), score p50 "
        f"{evaluation.score_ms_p50:.3f} ms, mean {evaluation.score_ms_mean:.3f} ms, "
        f"p99 {evaluation.score_ms_p99:.3f} ms",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.evaluate", description=__doc__,
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
    parser.add_argument("--run-file", type=Path, default=None, help="write the run in TREC format")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    for name in ("query_max_terms", "query_max_length", "depth", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    try:
        from index_builder.index_format import IndexFormatError
        from models.errors import ModelError

        searcher = Searcher.from_paths(args.index, args.model, query_max_length=args.query_max_length)
        evaluation = evaluate(searcher, args.beir, args.split, args.depth, args.query_max_terms, args.batch_size,
                              args.run_file)
    except (EvaluationInputError, IndexFormatError, IncompatibleArtifactsError, ModelError, ValueError,
            OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(evaluation))
    if args.json:
        args.json.write_text(json.dumps(asdict(evaluation), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
