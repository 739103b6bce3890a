"""End to end: a real uvicorn process on 127.0.0.1 answers exactly what the offline Searcher answers,
and its /metrics histograms count the requests made."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_http_search_equals_the_searcher(live_service, searcher, scifact_queries):
    with httpx.Client(base_url=live_service, timeout=30) as client:
        for text in scifact_queries[:10]:
            response = client.post("/search", json={"query": text, "k": 10, "include_text": True})
            assert response.status_code == 200, response.text
            expected = searcher.search(text, k=10, include_text=True)
            got = response.json()["hits"]
            assert [(h["id"], h["score"], h["title"], h["text"]) for h in got] == [
                (h.id, h.score, h.title, h.text) for h in expected.hits
            ]
        explained = client.post("/search", json={"query": scifact_queries[0], "explain": True, "query_max_terms": 12})
    want = searcher.search(scifact_queries[0], explain=True, query_max_terms=12)
    assert [tuple(t) for t in explained.json()["query_terms"]] == want.query_terms
    assert [h["contributions"] for h in explained.json()["hits"]] == [h.contributions for h in want.hits]


def test_metrics_histograms_count_the_requests_made(live_service, metric_value, scifact_queries):
    with httpx.Client(base_url=live_service, timeout=30) as client:
        before = client.get("/metrics").text
        for text in scifact_queries[:5]:
            assert client.post("/search", json={"query": text}).status_code == 200
        batch = client.post("/search/batch", json={"queries": [{"query": t} for t in scifact_queries[5:8]]})
        assert batch.status_code == 200
        assert client.post("/search", json={"query": " "}).status_code == 422
        after = client.get("/metrics").text
        info = client.get("/info").json()

    def delta(name, labels=None):
        return metric_value(after, name, labels) - metric_value(before, name, labels)

    for stage in ("tokenize", "queue", "encode", "score", "total"):
        assert delta("splade_stage_duration_seconds_count", {"stage": stage}) == 8, stage
    assert delta("splade_stage_duration_seconds_sum", {"stage": "total"}) > 0
    assert delta("splade_request_duration_seconds_count", {"endpoint": "/search", "status": "200"}) == 5
    assert delta("splade_request_duration_seconds_count", {"endpoint": "/search", "status": "422"}) == 1
    assert delta("splade_request_duration_seconds_count", {"endpoint": "/search/batch", "status": "200"}) == 1
    assert delta("splade_encoder_batch_size_sum") == 8
    assert delta("splade_query_terms_count") == 8
    assert info["settings"]["intra_op_threads"] == 1
    assert info["provider"] == "CPUExecutionProvider"


def test_service_refuses_an_index_built_with_another_tokenizer(tmp_path, small_index_dir, default_model_dir):
    index = tmp_path / "index"
    shutil.copytree(small_index_dir, index)
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["tokenizer_sha256"] = "0" * 64
    (index / "manifest.json").write_text(json.dumps(manifest))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPLADE_")}
    env.update(SPLADE_INDEX_DIR=str(index), SPLADE_MODEL_DIR=str(default_model_dir), SPLADE_DEVICE="cpu",
               SPLADE_PORT=str(free_port()))
    proc = subprocess.run(
        [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    assert "IncompatibleArtifactsError" in proc.stderr and "tokenizer_sha256" in proc.stderr
