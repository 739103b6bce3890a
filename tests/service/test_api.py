"""The HTTP contract in-process (httpx + ASGI transport) over a real model and a real 300-document index."""
from __future__ import annotations

import asyncio
import threading

import pytest

from service.app import create_app
from engine import IncompatibleArtifactsError

pytestmark = pytest.mark.anyio


def expected_hits(result, include_text=False, explain=False):
    hits = []
    for hit in result.hits:
        item = {"id": hit.id, "score": float(hit.score)}
        if include_text:
            item["title"], item["text"] = hit.title, hit.text
        if explain:
            item["contributions"] = hit.contributions
        hits.append(item)
    return hits


def assert_error_shape(response, status, error_type=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    if error_type is not None:
        assert error["type"] == error_type, error
    return error


# -- health, readiness, info, metrics -------------------------------------------------------------------


async def test_healthz_and_readyz(in_process):
    async with in_process() as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_not_ready_until_loaded_and_warm(searcher, service_settings, serve_app):
    release = threading.Event()

    def slow_factory(settings):
        release.wait(30)
        return searcher

    app = create_app(service_settings(), searcher_factory=slow_factory)
    async with serve_app(app, wait_ready=False) as client:
        health = await client.get("/healthz")
        not_ready = await client.get("/readyz")
        search = await client.post("/search", json={"query": "cells"})
        info = await client.get("/info")
        release.set()
        for _ in range(200):
            ready = await client.get("/readyz")
            if ready.status_code == 200:
                break
            await asyncio.sleep(0.05)
    assert health.status_code == 200
    assert_error_shape(not_ready, 503, "not_ready")
    assert not_ready.headers.get("retry-after") == "1"
    assert_error_shape(search, 503, "not_ready")
    assert_error_shape(info, 503, "not_ready")
    assert ready.status_code == 200


async def test_incompatible_artifacts_keep_the_service_unready_with_the_reason(service_settings, serve_app):
    failures = []

    def mismatched(settings):
        raise IncompatibleArtifactsError("tokenizer_sha256 abc (index) != def (model)")

    app = create_app(service_settings(), searcher_factory=mismatched, on_startup_failure=failures.append)
    async with serve_app(app, wait_ready=False) as client:
        for _ in range(100):
            if failures:
                break
            await asyncio.sleep(0.02)
        ready = await client.get("/readyz")
    assert len(failures) == 1 and isinstance(failures[0], IncompatibleArtifactsError)
    error = assert_error_shape(ready, 503, "not_ready")
    assert "tokenizer_sha256" in error["message"]


async def test_info_reports_manifests_provider_and_settings(in_process, searcher):
    async with in_process(max_k=500) as client:
        response = await client.get("/info")
    assert response.status_code == 200
    info = response.json()
    assert info["model"]["tokenizer_sha256"] == searcher.encoder.tokenizer_sha256
    assert info["index"]["tokenizer_sha256"] == searcher.index.tokenizer_sha256
    assert info["model"]["max_length"]["query"] == searcher.encoder.max_length
    assert info["provider"] == searcher.encoder.provider == "CPUExecutionProvider"
    assert info["settings"]["max_k"] == 500
    assert info["settings"]["port"] == 8000


async def test_metrics_count_the_searches_made(in_process, searcher, scifact_queries, metric_value):
    async with in_process() as client:
        for text in scifact_queries[:3]:
            assert (await client.post("/search", json={"query": text})).status_code == 200
        assert (await client.post("/search", json={"query": "x", "k": 0})).status_code == 422
        text = (await client.get("/metrics")).text
    assert metric_value(text, "splade_stage_duration_seconds_count", {"stage": "total"}) == 3
    assert metric_value(text, "splade_stage_duration_seconds_count", {"stage": "encode"}) == 3
    assert metric_value(text, "splade_request_duration_seconds_count", {"endpoint": "/search", "status": "200"}) == 3
    assert metric_value(text, "splade_request_duration_seconds_count", {"endpoint": "/search", "status": "422"}) == 1
    assert metric_value(text, "splade_encoder_batch_size_count") == 3
    assert metric_value(text, "splade_query_terms_count") == 3
    assert metric_value(text, "splade_postings_traversed_sum") > 0
    assert metric_value(text, "splade_index_documents") == searcher.index.num_documents
    assert metric_value(text, "splade_index_postings") == searcher.index.num_postings
    assert metric_value(text, "splade_model_info", {"provider": "CPUExecutionProvider"}) == 1
    assert 'le="5e-05"' in text and 'le="5.0"' in text  # explicit 50 µs .. 5 s buckets


# -- search results equal the offline Searcher -----------------------------------------------------------


async def test_text_search_equals_the_searcher(in_process, searcher, scifact_queries):
    async with in_process() as client:
        for text in scifact_queries[:8]:
            response = await client.post("/search", json={"query": text, "k": 20})
            assert response.status_code == 200, response.text
            body = response.json()
            expected = searcher.search(text, k=20)
            assert body["hits"] == expected_hits(expected)
            assert body["postings_traversed"] == expected.postings_traversed
            assert "query_terms" not in body


async def test_options_equal_the_searcher(in_process, searcher, scifact_queries):
    text = scifact_queries[0]
    async with in_process() as client:
        response = await client.post(
            "/search", json={"query": text, "k": 5, "query_max_terms": 8, "include_text": True, "explain": True}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    expected = searcher.search(text, k=5, query_max_terms=8, include_text=True, explain=True)
    assert body["hits"] == expected_hits(expected, include_text=True, explain=True)
    assert [tuple(t) for t in body["query_terms"]] == expected.query_terms
    assert len(body["query_terms"]) == 8
    assert all(hit["title"] is not None and hit["text"] for hit in body["hits"])
    for hit in body["hits"]:
        assert sum(hit["contributions"].values()) == pytest.approx(hit["score"], rel=1e-4)


async def test_vector_search_equals_the_searcher(in_process, searcher, scifact_queries):
    encoded = searcher.search(scifact_queries[1], k=1).query_terms
    vector = dict(encoded[:10])
    async with in_process() as client:
        response = await client.post("/search", json={"vector": vector, "k": 10, "explain": True})
    assert response.status_code == 200, response.text
    expected = searcher.search(vector, k=10, explain=True)
    body = response.json()
    assert body["hits"] == expected_hits(expected, explain=True)
    assert body["timings_ms"]["encode"] == 0 and body["timings_ms"]["tokenize"] == 0


async def test_default_k_applies(in_process):
    async with in_process(default_k=3) as client:
        response = await client.post("/search", json={"query": "vitamin D deficiency"})
    assert response.status_code == 200
    assert len(response.json()["hits"]) == 3


async def test_stage_timings_in_body_and_server_timing_header(in_process):
    async with in_process() as client:
        response = await client.post("/search", json={"query": "protein folding in cells"})
    assert response.status_code == 200
    timings = response.json()["timings_ms"]
    assert set(timings) == {"tokenize", "queue", "encode", "score", "total"}
    assert all(value >= 0 for value in timings.values())
    assert timings["encode"] > 0 and timings["score"] > 0
    assert timings["total"] >= timings["encode"] + timings["score"]
    header = {
        name.strip(): float(dur.split("=")[1])
        for name, dur in (part.split(";") for part in response.headers["server-timing"].split(","))
    }
    assert header == timings


async def test_batch_equals_the_searcher_and_encodes_texts_together(in_process, searcher, scifact_queries, metric_value):
    texts = scifact_queries[:6]
    vector = dict(searcher.search(texts[0], k=1).query_terms[:5])
    queries = [{"query": t, "k": 7} for t in texts] + [{"vector": vector, "k": 4}]
    async with in_process(encoder_max_batch_size=32) as client:
        response = await client.post("/search/batch", json={"queries": queries})
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 7
    expected = searcher.search_batch(texts, k=7)  # the Searcher also encodes the texts as one batch
    for got, want in zip(body["results"][:6], expected):
        assert got["hits"] == expected_hits(want)
    assert body["results"][6]["hits"] == expected_hits(searcher.search(vector, k=4))
    assert set(body["timings_ms"]) == {"tokenize", "queue", "encode", "score", "total"}
    assert "total;dur=" in response.headers["server-timing"]
    # the six texts went through the encoder as one batch of six
    assert metric_value(metrics, "splade_encoder_batch_size_count") == 1
    assert metric_value(metrics, "splade_encoder_batch_size_sum") == 6


async def test_concurrent_requests_are_micro_batched(in_process, searcher, scifact_queries, metric_value):
    texts = scifact_queries[:8]
    async with in_process(encoder_max_batch_size=8, encoder_max_wait_ms=200) as client:
        responses = await asyncio.gather(*(client.post("/search", json={"query": t}) for t in texts))
        metrics = (await client.get("/metrics")).text
    assert all(r.status_code == 200 for r in responses)
    assert metric_value(metrics, "splade_encoder_batch_size_sum") == 8
    assert metric_value(metrics, "splade_encoder_batch_size_count") < 8  # fewer encoder calls than queries
    for text, response in zip(texts, responses):
        want = searcher.search(text, k=10)
        got = response.json()["hits"]
        # padding in a shared batch may move weights by float rounding: same documents, same scores to 1e-4
        assert [h["id"] for h in got] == [h.id for h in want.hits] or _same_up_to_ties(got, want.hits)
        assert [h["score"] for h in got] == pytest.approx([h.score for h in want.hits], rel=1e-4)


def _same_up_to_ties(got, want) -> bool:
    return {h["id"] for h in got[:-1]} <= {h.id for h in want}


async def test_timeout_gives_504_and_the_request_never_reaches_the_encoder(in_process, metric_value):
    # max wait far above the timeout: the lone query waits for company and its deadline passes first
    async with in_process(request_timeout_s=0.1, encoder_max_wait_ms=1000) as client:
        response = await client.post("/search", json={"query": "too slow"})
        await asyncio.sleep(1.2)  # past the batch's due time: the expired query must have been dropped
        metrics = (await client.get("/metrics")).text
    error = assert_error_shape(response, 504, "timeout")
    assert error["details"][0]["limit"] == 0.1
    assert metric_value(metrics, "splade_rejected_requests_total", {"reason": "timeout"}) == 1
    assert metric_value(metrics, "splade_encoder_batch_size_count") == 0


# -- bad input: 4xx in the one error shape, naming the field and the limit -------------------------------

BAD_BODIES = [
    # (json body, status, field, limit)
    ({"query": ""}, 422, "query", 1),
    ({"query": "   \t\n "}, 422, "query", None),
    ({"query": "x" * 2001}, 422, "query", 2000),
    ({"query": "cells", "k": 0}, 422, "k", 1),
    ({"query": "cells", "k": 1001}, 422, "k", 1000),
    ({"query": "cells", "k": -5}, 422, "k", 1),
    ({"query": "cells", "query_max_terms": 65}, 422, "query_max_terms", 64),
    ({"query": "cells", "query_max_terms": 0}, 422, "query_max_terms", 1),
    ({"query": "cells", "colour": "red"}, 422, "colour", None),
    ({"query": 42}, 422, "query", None),
    ({"query": "cells", "k": "10"}, 422, "k", None),
    ({"query": "cells", "k": 2.5}, 422, "k", None),
    ({"query": "cells", "include_text": "yes"}, 422, "include_text", None),
    ({"query": ["a", "b"]}, 422, "query", None),
    ({}, 422, "query", None),
    ({"query": "cells", "vector": {"cell": 1.0}}, 422, "query", None),
    ({"vector": {}}, 422, "vector", 1),
    ({"vector": {"cell": -1.0}}, 422, "vector.cell", 0),
    ({"vector": {"cell": "heavy"}}, 422, "vector.cell", None),
    ({"vector": ["cell"]}, 422, "vector", None),
    ({"vector": {"zzqxunknownzz": 1.0}}, 422, "vector", None),
    ([1, 2, 3], 422, "body", None),
    ("just a string", 422, "body", None),
    (None, 422, "body", None),
]


@pytest.mark.parametrize(("body", "status", "field", "limit"), BAD_BODIES)
async def test_bad_search_bodies_are_4xx_naming_the_field(in_process, body, status, field, limit):
    async with in_process() as client:
        response = await client.post("/search", json=body)
    error = assert_error_shape(response, status)
    fields = [d["field"] for d in error["details"]]
    assert field in fields, error
    if limit is not None:
        assert any(d["limit"] == limit for d in error["details"] if d["field"] == field), error


RAW_BODIES = [
    (b'{"query": "cells"', 400, "malformed_json"),
    (b"not json at all", 400, "malformed_json"),
    (b'{"vector": {"cell": NaN}}', 422, "validation_error"),
    (b'{"vector": {"cell": Infinity}}', 422, "validation_error"),
    (b'{"vector": {"cell": -Infinity}}', 422, "validation_error"),
    (b'{"vector": {"cell": 1e400}}', 422, "validation_error"),
    (b'{"query": "\\ud800"}', 422, "validation_error"),
    (b'{"vector": {"\\udfff": 1.0}}', 422, "validation_error"),
    (b"\xff\xfe\x00garbage", 400, "malformed_json"),
    (b"", 422, "validation_error"),
]


@pytest.mark.parametrize(("raw", "status", "error_type"), RAW_BODIES)
async def test_malformed_and_non_finite_bodies_are_4xx(in_process, raw, status, error_type):
    async with in_process() as client:
        response = await client.post("/search", content=raw, headers={"content-type": "application/json"})
    error = assert_error_shape(response, status, error_type)
    assert error["details"], error


async def test_non_finite_weight_names_the_token(in_process):
    async with in_process() as client:
        response = await client.post(
            "/search", content=b'{"vector": {"cell": NaN}}', headers={"content-type": "application/json"}
        )
    error = assert_error_shape(response, 422)
    assert error["details"][0]["field"] == "vector.cell"
    assert "finite" in error["details"][0]["message"]


async def test_unknown_token_is_named(in_process):
    async with in_process() as client:
        response = await client.post("/search", json={"vector": {"cell": 1.0, "zzqxunknownzz": 2.0}})
    error = assert_error_shape(response, 422, "validation_error")
    assert "zzqxunknownzz" in error["message"]


BAD_BATCHES = [
    ({"queries": []}, "queries", 1),
    ({"queries": [{"query": "a"}] * 65}, "queries", 64),
    ({"queries": [{"query": "a"}, {"query": "b", "k": 0}]}, "queries[1].k", 1),
    ({"queries": [{"query": "a"}, {"vector": {"zzqxunknownzz": 1.0}}]}, "queries[1].vector", None),
    ({"queries": [{"query": "a"}], "k": 3}, "k", None),
    ({"queries": "a"}, "queries", None),
    ({}, "queries", None),
]


@pytest.mark.parametrize(("body", "field", "limit"), BAD_BATCHES)
async def test_bad_batches_are_4xx_naming_the_field(in_process, body, field, limit):
    async with in_process() as client:
        response = await client.post("/search/batch", json=body)
    error = assert_error_shape(response, 422)
    assert field in [d["field"] for d in error["details"]], error
    if limit is not None:
        assert any(d["limit"] == limit for d in error["details"]), error


async def test_unknown_route_and_wrong_method_use_the_error_shape(in_process):
    async with in_process() as client:
        missing = await client.get("/nope")
        wrong = await client.get("/search")
    assert_error_shape(missing, 404, "not_found")
    assert_error_shape(wrong, 405, "method_not_allowed")


async def test_openapi_publishes_the_limits(in_process):
    async with in_process(max_k=77, max_query_chars=123) as client:
        schema = (await client.get("/openapi.json")).json()
    request = schema["components"]["schemas"]["SearchRequest"]
    assert request["properties"]["k"]["maximum"] == 77
    assert request["additionalProperties"] is False
    assert {"maxLength": 123} .items() <= request["properties"]["query"]["anyOf"][0].items()
