"""A real Prometheus on 127.0.0.1 scraping a real uvicorn service on 127.0.0.1: the dashboard's queries work.

Searches go to the service; Prometheus, configured from deploy/prometheus/prometheus.yml, scrapes it every
second; then every expression of the Grafana dashboard and histogram_quantile(0.99, ...) of each stage are
asked of Prometheus's HTTP API and must return data. The service serves an approximate scorer (`pruned-rescore`,
its part added to a copy of the small index) with the recall monitor sampling every answer, so the recall panel's
gauge `splade_recall_at_k` has data too.
"""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.index_format import add_parts
from engine.scorers import PrunedRescoreScorer
from tests.ops.dashboard import GRAFANA_VARIABLES, expressions, load_dashboard, metric_names
from tests.ops.prometheus import running_prometheus
from tests.support.server import running_service

REPO_ROOT = Path(__file__).resolve().parents[2]
from engine import STAGES  # noqa: E402  (the one definition)
RATE_WINDOW = GRAFANA_VARIABLES["$__rate_interval"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def scifact_queries(scifact_dir: Path, count: int) -> list[str]:
    with open(scifact_dir / "queries.jsonl", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for _, line in zip(range(count), handle)]


def send_traffic(base_url: str, queries: list[str]) -> None:
    """Single searches, batches, text requests and one rejected request (so 4xx series exist too)."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for i, query in enumerate(queries):
            response = client.post("/search", json={"query": query, "k": 10 if i % 2 else 100,
                                                   "include_text": i % 3 == 0})
            assert response.status_code == 200, response.text
            if i % 5 == 0:
                batch = {"queries": [{"query": q, "k": 10} for q in queries[i:i + 4]]}
                response = client.post("/search/batch", json=batch)
                assert response.status_code == 200, response.text
        assert client.post("/search", json={"query": "x", "k": 0}).status_code == 422


@contextlib.contextmanager
def background_traffic(base_url: str, queries: list[str]):
    """A search every ~0.1 s while the checks run, so rate windows never slide past the traffic."""
    stop = threading.Event()

    def loop():
        with httpx.Client(base_url=base_url, timeout=30) as client:
            i = 0
            while not stop.wait(0.1):
                client.post("/search", json={"query": queries[i % len(queries)], "k": 10})
                i += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def approximate_index(small_index_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's small index with the `pruned-rescore` part (static pruning active: 30 postings a
    term on 300 documents), so the service answers with an approximate scorer the recall monitor samples."""
    copy = tmp_path / "approximate-index"
    shutil.copytree(small_index_dir, copy)
    add_parts(copy, PrunedRescoreScorer.part_writers({"n_postings": 30}))
    return copy


# Every answer of the approximate scorer is re-scored exactly: the recall gauge exists from the first search.
RECALL_MONITOR_ENV = {"SPLADE_SCORER": "pruned-rescore", "SPLADE_RECALL_SAMPLE_RATE": "1.0"}


def values(data: dict) -> list[float]:
    if data["resultType"] == "vector":
        return [float(sample["value"][1]) for sample in data["result"]]
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    raise AssertionError(f"unexpected result type {data['resultType']}")


def wait_for(check, timeout: float, what: str):
    """Retry `check` until it returns without an AssertionError (scrapes land every second)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last failure: {exc}") from None
            time.sleep(0.5)


def test_prometheus_scrapes_the_service_and_answers_every_dashboard_query(
    default_model_dir, small_index_dir, scifact_dir, tmp_path
):
    dashboard_exprs = expressions(load_dashboard())
    index_dir = approximate_index(small_index_dir, tmp_path)
    with running_service(default_model_dir, index_dir, extra_env=RECALL_MONITOR_ENV) as base_url:
        port = base_url.rsplit(":", 1)[1]
        # The image's health check, run for real against the ready service.
        health = subprocess.run([sys.executable, "deploy/docker/healthcheck.py"], cwd=REPO_ROOT,
                                env={"SPLADE_PORT": port}, capture_output=True, text=True, timeout=30)
        assert health.returncode == 0, health.stderr

        with running_prometheus(f"127.0.0.1:{port}", tmp_path) as prometheus:
            def target_is_up():
                assert values(prometheus.query('up{job="splade-serve"}')) == [1.0]
            wait_for(target_is_up, 30, "the first successful scrape")

            queries = scifact_queries(scifact_dir, 40)
            started = time.monotonic()
            while time.monotonic() - started < 3:  # traffic across several scrapes, so rates are non-zero
                send_traffic(base_url, queries[:10])
            send_traffic(base_url, queries[10:])

            def stage_quantiles_have_data():
                for stage in STAGES:
                    expr = (f"histogram_quantile(0.99, sum by (le) (rate(splade_stage_duration_seconds_bucket"
                            f'{{job="splade-serve", stage="{stage}"}}[{RATE_WINDOW}])))')
                    found = values(prometheus.query(expr))
                    assert len(found) == 1 and math.isfinite(found[0]) and found[0] > 0, (stage, found)

            def dashboard_queries_have_data():
                for expression in dashboard_exprs:
                    found = values(prometheus.query(expression.concrete()))
                    assert found, f"{expression.panel_title!r} {expression.ref_id}: empty result"
                    assert any(math.isfinite(v) for v in found), (expression.panel_title, expression.ref_id, found)

            with background_traffic(base_url, queries):
                wait_for(stage_quantiles_have_data, 30, "p99 of every stage")
                wait_for(dashboard_queries_have_data, 30, "every dashboard query")

            scraped = prometheus.metric_names()
            # After the waits: the recall gauge appears once the monitor has re-scored its first sample.
            exposition = httpx.get(f"{base_url}/metrics", timeout=10).text
            exported = {sample.name for family in text_string_to_metric_families(exposition)
                        for sample in family.samples}

    used = set().union(*(metric_names(e.expr) for e in dashboard_exprs))
    assert used, "the dashboard queries no metric"
    for name in sorted(used - {"up"}):  # `up` is Prometheus's own per-target series
        assert name in exported, f"the dashboard uses {name}, which the service's /metrics does not export"
        assert name in scraped, f"{name} was not scraped by Prometheus"
    assert "up" in scraped
    recall = [s for family in text_string_to_metric_families(exposition) for s in family.samples
              if s.name == "splade_recall_at_k"]
    assert [s.labels for s in recall] == [{"scorer": "pruned-rescore"}] and 0 < recall[0].value <= 1, recall
