"""Query modes over HTTP: `mode` bm25 / hybrid with per-request fusion, `explain` with every subquery's score
and rank, /info listing the modes and the default fusion, and bad input as 422s naming the field."""
from __future__ import annotations

import json

import pytest

from engine import bm25
from engine.fusion import FusionSpec, Ranked, fuse, retriever_depth
from engine.searcher import SearchOptions
from service.app import create_app, open_searcher
from tests.conftest import run_module
from tests.service.test_api import assert_error_shape

pytestmark = pytest.mark.anyio


async def test_info_lists_modes_and_the_default_fusion(in_process):
    async with in_process() as client:
        info = (await client.get("/info")).json()
    assert info["modes"] == ["splade", "bm25", "hybrid"]
    assert info["fusion"]["default"]["fusion"] == "linear" and info["fusion"]["default"]["normalization"] == "zscore"
    assert set(info["fusion"]["default"]["fusion_weights"]) == {"splade", "bm25"}
    assert info["settings"]["mode"] == "splade" and "bm25" in info["index"]["parts"]


async def test_bm25_mode_equals_the_field_and_explains_its_terms(in_process, searcher, small_index_dir):
    query = "Vitamin D deficiency and cardiovascular risk"
    async with in_process() as client:
        body = (await client.post("/search", json={"query": query, "k": 5, "mode": "bm25", "explain": True})).json()
    assert body["mode"] == "bm25"
    with searcher.acquire() as snapshot:
        field = bm25.field_of(snapshot.index)
        docs, scores, _ = field.search(field.query(query), 5)
        ids = snapshot.index.external_ids(docs)
    assert [h["id"] for h in body["hits"]] == ids
    assert [h["score"] for h in body["hits"]] == pytest.approx(scores.tolist())
    top = body["hits"][0]
    assert sum(top["contributions"].values()) == pytest.approx(top["score"], rel=1e-5)
    assert set(top["contributions"]) <= set(field.analyzer.terms(query))


@pytest.mark.parametrize("fusion", [
    {"fusion": "rrf", "rank_constant": 20, "fusion_weights": {"bm25": 2.0}},
    {"fusion": "linear", "normalization": "zscore", "fusion_weights": {"splade": 0.5, "bm25": 1.0}},
])
async def test_hybrid_fuses_both_lists_and_explains_each_subquery(in_process, searcher, fusion):
    query = "T cells regulate the immune response to tumours"
    async with in_process() as client:
        body = (await client.post("/search", json={"query": query, "k": 10, "mode": "hybrid", "explain": True,
                                                   **fusion})).json()
        splade = (await client.post("/search", json={"query": query, "k": 300, "mode": "splade"})).json()
        lexical = (await client.post("/search", json={"query": query, "k": 300, "mode": "bm25"})).json()
    assert body["mode"] == "hybrid" and len(body["hits"]) == 10
    rank_of = {name: {h["id"]: (r, h["score"]) for r, h in enumerate(res["hits"], 1)}
               for name, res in (("splade", splade), ("bm25", lexical))}
    for hit in body["hits"]:
        for name in ("splade", "bm25"):
            sub = hit["subqueries"][name]
            if sub["rank"] is None:
                assert hit["id"] not in rank_of[name] or rank_of[name][hit["id"]][0] > 100
            else:
                assert (sub["rank"], pytest.approx(sub["score"], rel=1e-5)) == rank_of[name][hit["id"]]
    # The same fusion computed here from the two lists, to the depth the service uses (max(2k, 100)).
    spec = FusionSpec(fusion["fusion"], {"splade": 1.0, "bm25": 1.0, **fusion["fusion_weights"]},
                      fusion.get("normalization", "minmax"), fusion.get("rank_constant", 60))
    depth = retriever_depth(10, 300)
    with searcher.acquire() as snapshot:
        index = snapshot.index

        def ranked(result):
            hits = result["hits"][:depth]
            numbers = [index.external_ids([d])[0] for d in range(index.num_documents)]
            position = {doc_id: n for n, doc_id in enumerate(numbers)}
            import numpy as np

            return Ranked(np.array([position[h["id"]] for h in hits], np.int64),
                          np.array([h["score"] for h in hits], np.float32))

        docs, scores = fuse({"splade": ranked(splade), "bm25": ranked(lexical)}, spec, 10)
        assert [h["id"] for h in body["hits"]] == index.external_ids(docs)
    assert [h["score"] for h in body["hits"]] == pytest.approx(scores.tolist(), rel=1e-5)


async def test_hybrid_in_a_batch_and_through_the_searcher(in_process, searcher):
    async with in_process() as client:
        batch = (await client.post("/search/batch", json={"queries": [
            {"query": "protein folding", "mode": "hybrid", "k": 3},
            {"query": "protein folding", "mode": "bm25", "k": 3}]})).json()
    assert [r["mode"] for r in batch["results"]] == ["hybrid", "bm25"]
    direct = searcher.search("protein folding", k=3, mode="hybrid")
    assert [h["id"] for h in batch["results"][0]["hits"]] == [h.id for h in direct.hits]


@pytest.mark.parametrize("body, field", [
    ({"mode": "dense"}, "mode"),
    ({"fusion": "sum", "mode": "hybrid"}, "fusion"),
    ({"normalization": "softmax"}, "normalization"),
    ({"fusion_weights": {"bm25": -1.0}}, "fusion_weights.bm25"),
    ({"fusion_weights": {"splade": 0.0, "bm25": 0.0}, "mode": "hybrid"}, "fusion_weights"),
    ({"fusion_weights": {"dense": 1.0}}, "fusion_weights.dense"),
    ({"rank_constant": -5}, "rank_constant"),
    ({"query_weight_mass": 0.2}, "query_weight_mass"),  # below the server's SPLADE_MIN_QUERY_WEIGHT_MASS
    ({"query_weight_mass": 0}, "query_weight_mass"),
    ({"query_weight_ratio": 0.9}, "query_weight_ratio"),  # above SPLADE_MAX_QUERY_WEIGHT_RATIO
    ({"two_phase_ratio": 0.9}, "two_phase_ratio"),  # above SPLADE_MAX_TWO_PHASE_RATIO
])
async def test_bad_mode_and_fusion_requests_are_422_naming_the_field(in_process, body, field):
    async with in_process() as client:
        response = await client.post("/search", json={"query": "protein folding", **body})
    error = assert_error_shape(response, 422, "validation_error")
    assert error["details"][0]["field"] == field, error


async def test_non_finite_weights_are_rejected(in_process):
    async with in_process() as client:
        for raw in ('{"query": "x", "fusion_weights": {"bm25": NaN}}', '{"query": "x", "rank_constant": Infinity}'):
            response = await client.post("/search", content=raw, headers={"content-type": "application/json"})
            assert 400 <= response.status_code < 500, response.text


async def test_a_vector_query_cannot_use_bm25(in_process):
    async with in_process() as client:
        response = await client.post("/search", json={"vector": {"cell": 1.0}, "mode": "bm25"})
    error = assert_error_shape(response, 422, "validation_error")
    assert error["details"][0]["field"] == "mode" and "text" in error["message"]


@pytest.fixture(scope="module")
def index_without_bm25(tmp_path_factory, default_model_dir):
    directory = tmp_path_factory.mktemp("no_bm25")
    vectors = directory / "vectors.jsonl"
    vectors.write_text("".join(json.dumps({"id": f"d{i}", "text": t, "vector": {"cell": 1.0 + i}}) + "\n"
                               for i, t in enumerate(["cells divide", "cell walls"])), encoding="utf-8")
    run_module("index_builder", "build", "--model", str(default_model_dir), "--corpus", str(vectors),
               "--out", str(directory / "index"), "--no-progress", "--no-bm25")
    return directory / "index"


async def test_hybrid_on_an_index_without_bm25_is_422_naming_mode(service_settings, serve_app, index_without_bm25):
    app = create_app(service_settings(index_dir=index_without_bm25), searcher_factory=open_searcher)
    async with serve_app(app) as client:
        info = (await client.get("/info")).json()
        response = await client.post("/search", json={"query": "cells", "mode": "hybrid"})
        ok = await client.post("/search", json={"query": "cells", "k": 2})
    assert info["modes"] == ["splade"]
    error = assert_error_shape(response, 422, "validation_error")
    assert error["details"][0]["field"] == "mode" and "no BM25 field" in error["message"]
    assert ok.status_code == 200 and ok.json()["mode"] == "splade"


async def test_the_server_default_mode_is_a_setting(service_settings, serve_app, index_without_bm25):
    app = create_app(service_settings(mode="hybrid", fusion="rrf", fusion_weight_bm25=3.0),
                     searcher_factory=open_searcher)
    async with serve_app(app) as client:
        info = (await client.get("/info")).json()
        body = (await client.post("/search", json={"query": "protein folding", "k": 3})).json()
    assert info["modes"][0] == "hybrid" and info["fusion"]["default"]["fusion"] == "rrf"
    assert info["fusion"]["default"]["fusion_weights"]["bm25"] == 3.0 and body["mode"] == "hybrid"
    failures: list[BaseException] = []
    app = create_app(service_settings(index_dir=index_without_bm25, mode="bm25"), searcher_factory=open_searcher,
                     on_startup_failure=failures.append)
    async with serve_app(app, wait_ready=False) as client:
        import asyncio

        for _ in range(600):
            if failures:
                break
            await asyncio.sleep(0.05)
        info = await client.get("/info")
    assert failures and "SPLADE_MODE" in str(failures[0]) and info.status_code == 503


def test_searcher_mode_options_reach_the_engine(searcher):
    with searcher.acquire() as snapshot:
        sparse = searcher.encode_texts(["protein folding"]).queries[0]
        scored = searcher.score_mode(snapshot, sparse, "protein folding", SearchOptions(k=3, mode="bm25"))
    assert scored.mode == "bm25" and len(scored.hits) == 3


def test_the_settings_defaults_are_the_engines_fusion_defaults():
    from service.hybrid_options import fusion_from_settings
    from service.settings import Settings

    assert fusion_from_settings(Settings()) == FusionSpec()


async def test_query_pruning_options_over_http(in_process, searcher):
    query = "Vitamin D deficiency increases the risk of cardiovascular disease"
    async with in_process() as client:
        pruned = (await client.post("/search", json={"query": query, "k": 5, "query_weight_ratio": 0.3,
                                                     "explain": True})).json()
        full = (await client.post("/search", json={"query": query, "k": 5, "explain": True})).json()
    direct = searcher.search(query, k=5, query_max_terms=None)
    assert [h["id"] for h in full["hits"]] == [h.id for h in direct.hits]
    assert pruned["postings_traversed"] < full["postings_traversed"]


@pytest.mark.parametrize("body, field", [
    ({"fusion_weights": {"splade": 0.0, "bm25": 0.0}, "mode": "hybrid"}, "queries[1].fusion_weights"),
    ({"query_weight_mass": 0.2}, "queries[1].query_weight_mass"),
    ({"vector": {"cell": 1.0}, "query": None, "mode": "hybrid"}, "queries[1].mode"),
])
async def test_batch_errors_name_the_query(in_process, body, field):
    second = {"query": "cells", **body}
    second = {key: value for key, value in second.items() if value is not None}
    async with in_process() as client:
        response = await client.post("/search/batch", json={"queries": [{"query": "a"}, second]})
    error = assert_error_shape(response, 422, "validation_error")
    assert error["details"][0]["field"] == field, error
