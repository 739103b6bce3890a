"""Run every judged query through the engine's Searcher and measure the ranking with ir-measures."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import SearchOptions, Searcher
from evaluation.beir import read_qrels, read_queries

MEASURES = ("nDCG@10", "RR@10", "R@100", "R@1000")


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
    scorer: str
    index: dict


def evaluate(searcher: Searcher, beir_folder: Path, split: str = "test", depth: int = 1000,
             query_max_terms: int | None = None, batch_size: int = 32,
             run_file: Path | None = None, scorer: str | None = None) -> Evaluation:
    import ir_measures

    qrels = read_qrels(beir_folder, split)
    queries = read_queries(beir_folder, set(qrels))
    query_ids = sorted(queries, key=lambda q: (len(q), q))
    run: dict[str, dict[str, float]] = {}
    encode_seconds = 0.0
    score_seconds, terms, postings = [], [], []
    options = SearchOptions(k=depth, scorer=scorer)
    with searcher.acquire() as snapshot:
        scorer_name = snapshot.scorer(scorer).name
        for start in range(0, len(query_ids), batch_size):
            ids = query_ids[start:start + batch_size]
            t0 = time.perf_counter()
            encoded = searcher.encode_texts([queries[q] for q in ids], query_max_terms)
            encode_seconds += time.perf_counter() - t0
            for query_id, query in zip(ids, encoded.queries):
                scored = searcher.score(snapshot, query, options)
                score_seconds.append(scored.score_s)
                terms.append(len(query))
                postings.append(scored.postings_traversed)
                run[query_id] = {hit.id: float(hit.score) for hit in scored.hits}
        index = snapshot.index
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
        score_ms_p99=float(np.percentile(score_ms, 99)), scorer=scorer_name,
        index={"path": str(index.path), "documents": index.num_documents,
               "postings": index.num_postings, "doc_max_terms": index.manifest.get("doc_max_terms"),
               "document_max_length": index.manifest.get("document_max_length"),
               "impacts": index.impacts.dtype.name},
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
        f"latency per query: encode {evaluation.encode_ms_per_query:.2f} ms (batched), score ({evaluation.scorer}) p50 "
        f"{evaluation.score_ms_p50:.3f} ms, mean {evaluation.score_ms_mean:.3f} ms, "
        f"p99 {evaluation.score_ms_p99:.3f} ms",
    ]
    return "\n".join(lines)
