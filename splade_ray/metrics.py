"""The Ray ingress's Prometheus metrics: the single-process service's (same names, so the dashboard and load
tests read both) plus the stages only a sharded search has: each shard's score time (inside the shard) and
call time (round trip from the ingress), the merge, shard failures and partial answers.

Each ingress replica serves its own `/metrics`; run one ingress replica per Prometheus target (docs/ray.md).
"""
from __future__ import annotations

from prometheus_client import Counter, Histogram

from service.metrics import STAGE_BUCKETS_S, ServiceMetrics


class RayMetrics(ServiceMetrics):
    def __init__(self, shards: int) -> None:
        super().__init__()
        r = self.registry
        self.shard_score = Histogram(
            "splade_shard_score_duration_seconds", "Time one query spent in a shard's scorer (inside the shard).",
            ("shard",), buckets=STAGE_BUCKETS_S, registry=r,
        )
        self.shard_call = Histogram(
            "splade_shard_call_duration_seconds", "Round trip of one query's call to a shard, seen by the ingress "
            "(scorer time plus Ray's transport and queueing).", ("shard",), buckets=STAGE_BUCKETS_S, registry=r,
        )
        self.merge = Histogram(
            "splade_merge_duration_seconds", "Time to merge the shards' top-k into the global top-k.",
            buckets=STAGE_BUCKETS_S, registry=r,
        )
        self.shard_failures = Counter(
            "splade_shard_failures", "Shard calls that failed or missed the request's deadline.", ("shard",),
            registry=r,
        )
        self.partial_responses = Counter(
            "splade_partial_responses", "Answers sent without some shards (requests with allow_partial only).",
            registry=r,
        )
        for shard in range(shards):
            for family in (self.shard_score, self.shard_call, self.shard_failures):
                family.labels(shard=str(shard))
        self.rejected.labels(reason="shard_unavailable")
