"""The run's summary (exact percentiles from every response time) and the service-level objectives.

Locust's own CSV/HTML reports round response times (to whole milliseconds below 100 ms), which cannot judge
a sub-millisecond objective; the locustfile therefore keeps every response time and writes this summary.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
MAX_FAILURE_EXAMPLES = 10


@dataclass(frozen=True)
class Objectives:
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None
    max_error_rate: float = 0.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ascending values (the smallest value with at least q of the data at or below)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[rank - 1])


def latency_figures(times_ms: Iterable[float]) -> dict:
    ordered = sorted(times_ms)
    figures = {name: percentile(ordered, q) for name, q in QUANTILES.items()}
    figures["max"] = float(ordered[-1]) if ordered else math.nan
    figures["mean"] = sum(ordered) / len(ordered) if ordered else math.nan
    return figures


def summarize(records: Sequence[tuple[str, float, str | None]], duration_s: float, stopped_by: str) -> dict:
    """records: (request name, response time in ms, failure message or None), one per request."""
    failures = [r for r in records if r[2] is not None]
    by_name: dict[str, dict] = {}
    for name in sorted({r[0] for r in records}):
        mine = [r for r in records if r[0] == name]
        by_name[name] = {
            "requests": len(mine),
            "failures": sum(1 for r in mine if r[2] is not None),
            "latency_ms": latency_figures(r[1] for r in mine),
        }
    return {
        "requests": len(records),
        "failures": len(failures),
        "error_rate": len(failures) / len(records) if records else math.nan,
        "duration_s": duration_s,
        "requests_per_s": len(records) / duration_s if duration_s > 0 else math.nan,
        "latency_ms": latency_figures(r[1] for r in records),
        "by_name": by_name,
        "failure_examples": sorted({f"{r[0]}: {r[2]}" for r in failures})[:MAX_FAILURE_EXAMPLES],
        "stopped_by": stopped_by,
    }


def missed_objectives(summary: dict, objectives: Objectives) -> list[str]:
    """One line per objective the run missed (empty: every objective met)."""
    if not summary.get("requests"):
        return ["no request completed: nothing to judge"]
    missed = []
    if summary["error_rate"] > objectives.max_error_rate:
        missed.append(
            f"error rate {summary['error_rate']:.4f} ({summary['failures']} of {summary['requests']}) "
            f"is above --max-error-rate {objectives.max_error_rate}"
        )
    for name, limit in (("p95", objectives.max_p95_ms), ("p99", objectives.max_p99_ms)):
        value = summary["latency_ms"][name]
        if limit is not None and not value <= limit:
            missed.append(f"{name} latency {value:.3f} ms is above --max-{name}-ms {limit}")
    return missed


def write_summary(summary: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_summary(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
