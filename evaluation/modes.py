"""Every query mode in one run (`python -m evaluation --modes splade,bm25,hybrid-rrf,hybrid-linear`), and the
fusion grid the server defaults were chosen from (`--tune-fusion`, on a split other than the test split).

Each judged query is encoded once (in batches, as the service does) and scored in every mode through the
Searcher's mode path (engine.hybrid), so the figures are the service's. Mode names:

    splade                the SPLADE field alone (the index's scorer)
    bm25                  the BM25 field alone
    hybrid-rrf            both, reciprocal rank fusion
    hybrid-linear         both, min-max normalized linear fusion
    hybrid-linear-zscore  both, z-score normalized linear fusion
    hybrid                both, the fusion given by the flags (default: the server's default)

Weights and the RRF rank constant come from `--fusion-weights` / `--rank-constant` (defaults: the service's
SPLADE_FUSION_* defaults). Latency per query and mode is the score stage (BM25's analysis included); the
encoder's time is reported once (bm25 does not need it).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import SearchOptions, Searcher, query_pruning
from engine.fusion import FusionSpec, Ranked, fuse, retriever_depth
from evaluation.beir import EvaluationInputError, read_qrels, read_queries
from evaluation.run import MEASURES

MODE_NAMES = ("splade", "bm25", "hybrid", "hybrid-rrf", "hybrid-linear", "hybrid-linear-zscore")


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODE_NAMES]
    if not modes or unknown:
        raise EvaluationInputError(f"--modes: unknown mode(s) {unknown or text!r}; choose from {', '.join(MODE_NAMES)}")
    return modes


def mode_options(name: str, base: FusionSpec) -> tuple[str, FusionSpec | None]:
    """(engine mode, fusion) of an evaluation mode name."""
    if name in ("splade", "bm25"):
        return name, None
    if name == "hybrid":
        return "hybrid", base
    if name == "hybrid-rrf":
        return "hybrid", base.with_overrides(method="rrf")
    normalization = "zscore" if name.endswith("zscore") else "minmax"
    return "hybrid", base.with_overrides(method="linear", normalization=normalization)


@dataclass
class ModeFigures:
    mode: str
    fusion: dict | None
    metrics: dict[str, float]
    score_ms_p50: float
    score_ms_mean: float
    score_ms_p99: float
    mean_postings: float


@dataclass
class ModesEvaluation:
    split: str
    queries: int
    depth: int
    encode_ms_per_query: float
    modes: list[ModeFigures] = field(default_factory=list)
    index: dict = field(default_factory=dict)
    query_pruning: dict = field(default_factory=dict)


def _judged(beir_folder: Path, split: str) -> tuple[dict, dict[str, str], list[str]]:
    qrels = read_qrels(beir_folder, split)
    queries = read_queries(beir_folder, set(qrels))
    return qrels, queries, sorted(queries, key=lambda q: (len(q), q))


def _measure(qrels: dict, run: dict) -> dict[str, float]:
    import ir_measures

    measures = [ir_measures.parse_measure(name) for name in MEASURES]
    results = ir_measures.calc_aggregate(measures, qrels, run)
    return {name: float(results[measure]) for name, measure in zip(MEASURES, measures)}


def evaluate_modes(searcher: Searcher, beir_folder: Path, split: str, modes: list[str], depth: int = 1000,
                   query_max_terms: int | None = None, batch_size: int = 32, scorer: str | None = None,
                   fusion: FusionSpec | None = None, query_weight_mass: float | None = None,
                   query_weight_ratio: float | None = None, two_phase_ratio: float | None = None) -> ModesEvaluation:
    query_pruning.check(query_weight_mass, query_weight_ratio, two_phase_ratio=two_phase_ratio)
    qrels, queries, query_ids = _judged(beir_folder, split)
    terms: list[int] = []
    base = (fusion or searcher.fusion).checked()
    plans = {name: mode_options(name, base) for name in modes}
    runs: dict[str, dict[str, dict[str, float]]] = {name: {} for name in modes}
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    postings: dict[str, list[int]] = {name: [] for name in modes}
    encode_seconds = 0.0
    with searcher.acquire() as snapshot:
        for start in range(0, len(query_ids), batch_size):
            ids = query_ids[start:start + batch_size]
            t0 = time.perf_counter()
            encoded = searcher.encode_texts([queries[q] for q in ids], query_max_terms)
            encode_seconds += time.perf_counter() - t0
            for query_id, sparse in zip(ids, encoded.queries):
                terms.append(len(query_pruning.prune(sparse, query_weight_mass, query_weight_ratio)))
                for name, (mode, spec) in plans.items():
                    options = SearchOptions(k=depth, scorer=scorer, mode=mode, fusion=spec,
                                            query_weight_mass=query_weight_mass,
                                            query_weight_ratio=query_weight_ratio,
                                            two_phase_ratio=two_phase_ratio)
                    scored = searcher.score_mode(snapshot, sparse, queries[query_id], options)
                    seconds[name].append(scored.score_s)
                    postings[name].append(scored.postings_traversed)
                    runs[name][query_id] = {hit.id: float(hit.score) for hit in scored.hits}
        index = snapshot.index
    result = ModesEvaluation(split, len(query_ids), depth, encode_seconds * 1000 / len(query_ids),
                             index={"path": str(index.path), "documents": index.num_documents},
                             query_pruning={"query_weight_mass": query_weight_mass,
                                            "query_weight_ratio": query_weight_ratio,
                                            "two_phase_ratio": two_phase_ratio,
                                            "mean_splade_query_terms": float(np.mean(terms))})
    for name, (mode, spec) in plans.items():
        ms = np.array(seconds[name]) * 1000
        described = None if spec is None else {"fusion": spec.method, "weights": dict(spec.weights),
                                               "normalization": spec.normalization,
                                               "rank_constant": spec.rank_constant}
        result.modes.append(ModeFigures(name, described, _measure(qrels, runs[name]),
                                        float(np.percentile(ms, 50)), float(ms.mean()),
                                        float(np.percentile(ms, 99)), float(np.mean(postings[name]))))
    return result


def format_modes(evaluation: ModesEvaluation) -> str:
    lines = [f"| mode | {' | '.join(MEASURES)} | score ms p50 / mean / p99 | fusion |",
             "|---|" + "---|" * len(MEASURES) + "---|---|"]
    for row in evaluation.modes:
        fusion = "" if row.fusion is None else (
            f"{row.fusion['fusion']} weights splade={row.fusion['weights'].get('splade', 1.0):g} "
            f"bm25={row.fusion['weights'].get('bm25', 1.0):g}"
            + (f" rank constant {row.fusion['rank_constant']:g}" if row.fusion["fusion"] == "rrf"
               else f" {row.fusion['normalization']}"))
        figures = " | ".join(f"{row.metrics[m]:.4f}" for m in MEASURES)
        lines.append(f"| {row.mode} | {figures} | {row.score_ms_p50:.3f} / {row.score_ms_mean:.3f} / "
                     f"{row.score_ms_p99:.3f} | {fusion} |")
    lines.append("")
    lines.append(f"query pruning {evaluation.query_pruning}")
    lines.append(f"split {evaluation.split}, {evaluation.queries} queries, top-{evaluation.depth}; latency per query: "
                 f"score as above (ms), encode {evaluation.encode_ms_per_query:.2f} ms (batched; bm25 needs none)")
    return "\n".join(lines)


# -- choosing the defaults: one retrieval per query, every fusion of the grid over the same two lists --------

RRF_CONSTANTS = (5, 10, 20, 40, 60, 100)
BM25_WEIGHTS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)


def fusion_grid() -> list[FusionSpec]:
    grid = [FusionSpec("rrf", {"splade": 1.0, "bm25": w}, rank_constant=c)
            for c, w in itertools.product(RRF_CONSTANTS, BM25_WEIGHTS)]
    grid += [FusionSpec("linear", {"splade": 1.0, "bm25": w}, n)
             for n, w in itertools.product(("minmax", "zscore"), BM25_WEIGHTS)]
    return grid


def tune_fusion(searcher: Searcher, beir_folder: Path, split: str, k: int = 10, query_max_terms: int | None = None,
                batch_size: int = 32, scorer: str | None = None) -> list[tuple[FusionSpec, dict[str, float]]]:
    """nDCG@10 etc. of every fusion in `fusion_grid()` on `split`, best first (never tune on the test split)."""
    qrels, queries, query_ids = _judged(beir_folder, split)
    lists: dict[str, dict[str, Ranked]] = {}
    with searcher.acquire() as snapshot:
        depth = retriever_depth(k, snapshot.index.num_documents)
        for start in range(0, len(query_ids), batch_size):
            ids = query_ids[start:start + batch_size]
            encoded = searcher.encode_texts([queries[q] for q in ids], query_max_terms)
            for query_id, sparse in zip(ids, encoded.queries):
                per_mode = {}
                for mode in ("splade", "bm25"):
                    scored = searcher.score_mode(snapshot, sparse, queries[query_id],
                                                 SearchOptions(k=depth, scorer=scorer, mode=mode))
                    per_mode[mode] = Ranked(np.array([h.doc_number for h in scored.hits], np.int64),
                                            np.array([h.score for h in scored.hits], np.float32))
                lists[query_id] = per_mode
        index = snapshot.index
    results = []
    for spec in fusion_grid():
        run = {}
        for query_id, per_mode in lists.items():
            docs, scores = fuse(per_mode, spec, k)
            run[query_id] = dict(zip(index.external_ids(docs), scores.tolist()))
        results.append((spec, _measure(qrels, run)))
    results.sort(key=lambda item: -item[1]["nDCG@10"])
    return results


def format_tuning(results: list[tuple[FusionSpec, dict[str, float]]], split: str, top: int = 100) -> str:
    lines = [f"fusion grid on split {split!r} (k=10), best {min(top, len(results))} of {len(results)} by nDCG@10:",
             "| fusion | bm25 weight (splade 1) | rank constant / normalization | nDCG@10 | RR@10 |",
             "|---|---|---|---|---|"]
    for spec, metrics in results[:top]:
        detail = f"{spec.rank_constant:g}" if spec.method == "rrf" else spec.normalization
        lines.append(f"| {spec.method} | {spec.weight('bm25'):g} | {detail} | {metrics['nDCG@10']:.4f} | "
                     f"{metrics['RR@10']:.4f} |")
    return "\n".join(lines)
