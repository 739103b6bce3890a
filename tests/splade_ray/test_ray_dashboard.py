"""The Ray deployment's Grafana dashboard (deploy/grafana/dashboards/splade-serve-ray.json): every expression
parses with promtool, every metric it reads is one the Ray ingress exports (splade_ray.metrics, the class the
ingress serves /metrics from), and it has a per-shard panel."""
from __future__ import annotations

import subprocess

import yaml
from prometheus_client.parser import text_string_to_metric_families

from splade_ray.metrics import RayMetrics
from tests.conftest import REPO_ROOT
from tests.ops.dashboard import expressions, load_dashboard, metric_names
from tests.ops.tools import tool

RAY_DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "splade-serve-ray.json"


def exported_names(shards: int = 2) -> set[str]:
    metrics = RayMetrics(shards)
    metrics.request_duration.labels(endpoint="/search", status="200").observe(0.01)  # labelled on first request
    body, _ = metrics.exposition()
    return {sample.name for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def test_every_expression_parses_and_reads_an_exported_metric(tmp_path):
    exprs = expressions(load_dashboard(RAY_DASHBOARD))
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "ray", "rules": [
        {"record": f"ray:expression_{i}", "expr": e.concrete()} for i, e in enumerate(exprs)]}]}))
    proc = subprocess.run([tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    used = set().union(*(metric_names(e.expr) for e in exprs))
    missing = used - exported_names()
    assert used and not missing, f"the Ray dashboard reads metrics the ingress does not export: {missing}"


def test_a_panel_shows_each_shard():
    per_shard = [e for e in expressions(load_dashboard(RAY_DASHBOARD))
                 if "splade_shard_score_duration_seconds" in e.expr and "shard" in e.legend]
    assert per_shard and all("by (le, shard)" in e.expr for e in per_shard)
    assert {'splade_shard_score_duration_seconds_count'} <= exported_names()
