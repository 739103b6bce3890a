"""Which stage of the service a run spent its time in: the service's stage histograms, scraped before and
after the run, give the mean time per query in each stage (tokenize, queue, encode, score, total)."""
from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

STAGE_METRIC = "splade_stage_duration_seconds"


@dataclass(frozen=True)
class StageSnapshot:
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, exposition: str) -> StageSnapshot:
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(exposition):
            if family.name != STAGE_METRIC:
                continue
            for sample in family.samples:
                stage = sample.labels.get("stage")
                if sample.name == STAGE_METRIC + "_sum":
                    sums[stage] = sample.value
                elif sample.name == STAGE_METRIC + "_count":
                    counts[stage] = sample.value
        return cls(sums, counts)

    @classmethod
    def scrape(cls, host: str) -> StageSnapshot | None:
        """The service's current stage totals; None when /metrics cannot be read (the run still goes on)."""
        try:
            response = httpx.get(f"{host}/metrics", timeout=5)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        return cls.parse(response.text)


def stage_means_ms(before: StageSnapshot | None, after: StageSnapshot | None) -> dict[str, float] | None:
    """Mean milliseconds per query in each stage between two snapshots (None without both)."""
    if before is None or after is None:
        return None
    means = {}
    for stage, total in after.sums.items():
        count = after.counts.get(stage, 0) - before.counts.get(stage, 0)
        if count > 0:
            means[stage] = 1000 * (total - before.sums.get(stage, 0.0)) / count
    return means or None
