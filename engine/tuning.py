"""Automatic tuning: the fastest configuration of an approximate scorer that meets a recall target.

Candidates come from the scorer (`Scorer.tuning_grid()`); each is measured on sample queries against the exact
scorer (recall@k of the exact top-k) and timed on one thread. The fastest one whose mean recall meets the
target wins; for a scorer with a work cap (`Scorer.work_cap`, e.g. `clustered`'s `max_documents`), caps at
quantiles of the work its queries did are tried on top of it and kept when they are faster and still meet the
target (a cap trims the slowest queries: at 1M it brought the p99 from 0.90x to 0.71x Seismic's at the same
recall). The winner is then re-measured on held-out queries, so the recorded figure is not the one it was
chosen on.
The result is data: a `TunedConfig` named by what it achieves (`recall99_k10`), stored in the index manifest.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from engine.errors import EngineError
from engine.index_format import InvertedIndex
from engine.manifest import TunedConfig
from engine.query import SparseQuery
from engine.scorers import ExactScorer, Scorer


class TuningError(EngineError):
    """No candidate reached the target; the message names the best recall found."""


# Quantiles of the chosen configuration's per-query work tried as caps.
CAP_QUANTILES = (0.5, 0.75, 0.9, 0.95)


@dataclass(frozen=True)
class Measurement:
    options: dict[str, Any]
    recall: float
    mean_ms: float
    p99_ms: float
    work: tuple[int, ...] = ()  # per query, the scorer's work counter (Scorer.work_cap), when it has one


def config_name(target_recall: float, k: int) -> str:
    """recall99_k10 for (0.99, 10); recall995_k1000 for (0.995, 1000)."""
    digits = f"{target_recall:.4f}".split(".")[1].rstrip("0") or "0"
    return f"recall{digits}_k{k}"


def exact_top(index: InvertedIndex, queries: list[SparseQuery], k: int) -> list[set[int]]:
    exact = ExactScorer.for_index(index)
    scratch = exact.new_scratch()
    return [set(exact.search(q, k, scratch, {}).doc_numbers.tolist()) for q in queries]


def measure(scorer: Scorer, queries: list[SparseQuery], wanted: list[set[int]], k: int,
            options: dict[str, Any]) -> Measurement:
    scratch = scorer.new_scratch()
    resolved = type(scorer).resolve_options(options)
    scorer.search(queries[0], k, scratch, resolved)  # JIT and page warm-up, not timed
    counter = type(scorer).work_cap[1] if type(scorer).work_cap else None
    recalls, times, work = [], [], []
    for query, want in zip(queries, wanted):
        t0 = time.perf_counter()
        top = scorer.search(query, k, scratch, resolved)
        times.append(time.perf_counter() - t0)
        if want:
            recalls.append(len(want & set(top.doc_numbers.tolist())) / len(want))
        if counter is not None:
            work.append(int(top.stats.get(counter, 0)))
    ms = np.array(times) * 1000
    return Measurement(dict(options), float(np.mean(recalls)) if recalls else 1.0, float(ms.mean()),
                       float(np.percentile(ms, 99)), tuple(work))


def capped_candidates(scorer_cls: type[Scorer], chosen: Measurement) -> list[dict[str, Any]]:
    """The chosen options with the scorer's work cap at CAP_QUANTILES of the work they did (distinct caps
    within the option's limits, tightest first); none for a scorer without a cap."""
    if scorer_cls.work_cap is None or not chosen.work:
        return []
    option = scorer_cls.work_cap[0]
    spec = scorer_cls.options[option]
    caps = sorted({int(np.quantile(chosen.work, q)) for q in CAP_QUANTILES})
    return [{**chosen.options, option: cap} for cap in caps if spec.minimum < cap <= spec.maximum]


def tune(index: InvertedIndex, scorer_cls: type[Scorer], tuning: list[SparseQuery], held_out: list[SparseQuery],
         k: int, target_recall: float, progress=None) -> tuple[TunedConfig, list[Measurement]]:
    """The fastest candidate meeting `target_recall` on `tuning`, re-measured on `held_out` (TuningError if none)."""
    if scorer_cls.safe:
        raise TuningError(f"scorer {scorer_cls.name!r} is exact: there is nothing to tune")
    if not tuning or not held_out:
        raise TuningError("tuning needs sample queries for both the choice and the held-out check")
    scorer = scorer_cls.for_index(index)
    wanted = exact_top(index, tuning, k)
    measured = []
    for options in scorer_cls.tuning_grid(index):
        measured.append(measure(scorer, tuning, wanted, k, options))
        if progress is not None:
            progress(measured[-1])
    passing = [m for m in measured if m.recall >= target_recall]
    if not passing:
        best = max(measured, key=lambda m: m.recall)
        raise TuningError(f"no configuration of {scorer_cls.name!r} reaches recall@{k} {target_recall} on "
                          f"{len(tuning)} queries; the best found is {best.recall:.4f} with {best.options}")
    chosen = min(passing, key=lambda m: m.mean_ms)
    for options in capped_candidates(scorer_cls, chosen):
        measured.append(measure(scorer, tuning, wanted, k, options))
        if progress is not None:
            progress(measured[-1])
        if measured[-1].recall >= target_recall and measured[-1].mean_ms < chosen.mean_ms:
            chosen = measured[-1]
    check = measure(scorer, held_out, exact_top(index, held_out, k), k, chosen.options)
    exact = measure(ExactScorer.for_index(index), held_out, exact_top(index, held_out, k), k, {})
    config = TunedConfig(scorer=scorer_cls.name, options=chosen.options, k=k, target_recall=target_recall,
                         measured_recall=round(check.recall, 6), queries=len(held_out),
                         mean_ms=round(check.mean_ms, 4), p99_ms=round(check.p99_ms, 4),
                         exact_mean_ms=round(exact.mean_ms, 4),
                         tuned_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return config, measured
