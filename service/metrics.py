"""Prometheus metrics of the service (names and labels are the contract in docs/design.md).

Each app owns a `CollectorRegistry`, so several apps in one process (tests, benchmarks) never collide.
One uvicorn worker per process is the deployment unit (see docs/service.md): every metric here is then
exact without prometheus-client's multiprocess mode, which cannot serve gauges like in-flight or info.
"""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, Counter, Gauge, Histogram, Info, generate_latest

from engine import STAGES, StageTimes

# Explicit buckets, 50 µs to 5 s: tokenization is tens of µs, a slow batch is seconds.
STAGE_BUCKETS_S = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01,
    0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
QUERY_TERM_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
POSTINGS_BUCKETS = (10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_resident_memory_bytes & co.: the soak test (load_tests/soak.py) watches memory through it.
        ProcessCollector(registry=r)
        self.request_duration = Histogram(
            "splade_request_duration_seconds", "HTTP request duration by endpoint and status.",
            ("endpoint", "status"), buckets=STAGE_BUCKETS_S, registry=r,
        )
        self.stage_duration = Histogram(
            "splade_stage_duration_seconds", "Time of one query in each stage of a search.",
            ("stage",), buckets=STAGE_BUCKETS_S, registry=r,
        )
        self.encoder_batch_size = Histogram(
            "splade_encoder_batch_size", "Query texts per encoder call.", buckets=BATCH_SIZE_BUCKETS, registry=r,
        )
        self.query_terms = Histogram(
            "splade_query_terms", "Query terms after pruning.", buckets=QUERY_TERM_BUCKETS, registry=r,
        )
        self.postings_traversed = Histogram(
            "splade_postings_traversed", "Postings scored per query.", buckets=POSTINGS_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("splade_requests_in_flight", "HTTP requests being served.", registry=r)
        self.rejected = Counter(
            "splade_rejected_requests", "Requests refused: the queue was full or the deadline passed.",
            ("reason",), registry=r,
        )
        self.index_documents = Gauge("splade_index_documents", "Documents in the served index.", registry=r)
        self.index_postings = Gauge("splade_index_postings", "Postings in the served index.", registry=r)
        self.index_generation = Gauge(
            "splade_index_generation", "Served index generation (+1 on every hot swap since start).", registry=r)
        self.index_segments = Gauge("splade_index_segments", "Segments of the served index.", registry=r)
        self.index_deleted_documents = Gauge(
            "splade_index_deleted_documents", "Deleted documents still in the served index's segments.", registry=r)
        self.index_reloads = Counter(
            "splade_index_reloads", "Index reload attempts (watcher or POST /admin/reload), by outcome.",
            ("outcome",), registry=r)
        self.recall = Gauge(
            "splade_recall_at_k", "Recall@k of the served approximate scorer against exact re-scoring of sampled "
            "live queries (mean over the recent window).", ("scorer",), registry=r,
        )
        self.recall_samples = Counter(
            "splade_recall_samples", "Live queries sampled for exact re-scoring, by outcome.", ("outcome",), registry=r,
        )
        self.recall_queue = Gauge("splade_recall_queue", "Sampled queries waiting for exact re-scoring.", registry=r)
        self.model_info = Info("splade_model", "Served model, its kind, execution provider and index.", registry=r)
        # Pre-create the label sets so dashboards see zeros rather than missing series.
        for stage in STAGES:
            self.stage_duration.labels(stage=stage)
        for reason in ("queue_full", "timeout"):
            self.rejected.labels(reason=reason)
        for outcome in ("scored", "dropped", "failed"):
            self.recall_samples.labels(outcome=outcome)
        for outcome in ("swapped", "refused", "unchanged"):
            self.index_reloads.labels(outcome=outcome)

    def observe_stages(self, times: StageTimes) -> None:
        for stage in STAGES:
            self.stage_duration.labels(stage=stage).observe(getattr(times, stage))

    def describe_artifacts(self, *, model: str, kind: str, provider: str, index: str, documents: int,
                           postings: int) -> None:
        self.model_info.info({"model": model, "kind": kind, "provider": provider, "index": index})
        self.index_documents.set(documents)
        self.index_postings.set(postings)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
