"""The scorer seam over HTTP: /info lists what the index serves, a request may name a scorer, bad names and
options are 422s naming the field and the allowed values, and SPLADE_SCORER must be servable at start-up."""
from __future__ import annotations

import asyncio

import pytest

from engine import InvalidQueryError
from engine.scorers import intra_query
from service.app import create_app, open_searcher
from tests.service.test_api import assert_error_shape

pytestmark = pytest.mark.anyio


async def test_info_lists_the_scorers(in_process):
    async with in_process() as client:
        info = (await client.get("/info")).json()
    assert info["scorers"]["default"] == "exact"
    # pruned-rescore needs a part this index lacks, so it is not offered here.
    assert info["scorers"]["available"] == ["exact", "exact-blocked"]
    assert info["scorers"]["details"]["exact"]["safe"] is True
    assert info["scorers"]["details"]["exact-blocked"]["safe"] is True and info["scorers"]["configs"] == {}
    # every build carries the BM25 field and the metadata part (docs/filters.md)
    assert info["index"]["default_scorer"] == "exact" and list(info["index"]["parts"]) == ["bm25", "metadata"]


async def test_a_request_may_name_the_scorer(in_process, searcher, scifact_queries):
    async with in_process() as client:
        named = (await client.post("/search", json={"query": scifact_queries[0], "k": 5, "scorer": "exact"})).json()
        default = (await client.post("/search", json={"query": scifact_queries[0], "k": 5})).json()
    assert named["scorer"] == default["scorer"] == "exact"
    assert named["hits"] == default["hits"]
    blocked = (await client_post(in_process, {"query": scifact_queries[0], "k": 5, "scorer": "exact-blocked"}))
    assert blocked["scorer"] == "exact-blocked" and blocked["hits"] == named["hits"]  # safe: the same hits
    want = searcher.search(scifact_queries[0], k=5)
    assert [h["id"] for h in named["hits"]] == [h.id for h in want.hits]
    assert named["postings_traversed"] == want.postings_traversed > 0


async def client_post(in_process, body):
    async with in_process() as client:
        return (await client.post("/search", json=body)).json()


@pytest.mark.parametrize("body, field, fragment", [
    ({"scorer": "pruned-rescore"}, "scorer", "the index lacks the parts it needs (['pruned_rescore'])"),
    ({"scorer": "exact", "scorer_options": {"query_cut": 3}}, "scorer_options.query_cut", "has no option"),
    ({"scorer": "seismic"}, "scorer", "unknown scorer: 'seismic'"),
    ({"scorer_options": {"heap_factor": 0.9}}, "scorer_options.heap_factor", "has no option 'heap_factor'"),
    ({"scorer": ""}, "scorer", "at least 1 character"),
])
async def test_bad_scorer_requests_are_422_naming_the_field(in_process, body, field, fragment):
    async with in_process() as client:
        response = await client.post("/search", json={"query": "protein folding", **body})
        batch = await client.post("/search/batch", json={"queries": [{"query": "a"}, {"query": "b", **body}]})
    error = assert_error_shape(response, 422, "validation_error")
    assert error["details"][0]["field"] == field and fragment in error["message"], error
    if body.get("scorer") == "seismic":
        assert error["details"][0]["limit"] == "exact, exact-blocked"  # the allowed values
    batch_error = assert_error_shape(batch, 422, "validation_error")
    assert batch_error["details"][0]["field"] == f"queries[1].{field}", batch_error


async def test_an_unservable_default_scorer_stops_start_up(service_settings, serve_app):
    failures: list[BaseException] = []
    app = create_app(service_settings(scorer="seismic"), searcher_factory=open_searcher,
                     on_startup_failure=failures.append)
    async with serve_app(app, wait_ready=False) as client:
        for _ in range(600):
            if failures:
                break
            await asyncio.sleep(0.05)
        ready = await client.get("/readyz")
    assert len(failures) == 1 and isinstance(failures[0], InvalidQueryError)
    error = assert_error_shape(ready, 503, "not_ready")
    assert "SPLADE_SCORER: unknown scorer: 'seismic'" in error["message"]


@pytest.fixture
def one_thread_after():
    """An app configures the process-wide intra-query cap at start-up; put back the default afterwards."""
    yield
    intra_query.configure(1)


@pytest.mark.parametrize("threads, fragment, limit", [
    (0, "must be in [1, 64], got 0", "1, 64"),
    (65, "must be in [1, 64], got 65", "1, 64"),
    (1.5, "must be an integer, got 1.5", None),
])
async def test_the_threads_option_outside_its_limits_is_422(in_process, threads, fragment, limit):
    body = {"query": "protein folding", "scorer": "exact-blocked", "scorer_options": {"threads": threads}}
    async with in_process() as client:
        response = await client.post("/search", json=body)
    error = assert_error_shape(response, 422, "validation_error")
    assert error["details"][0]["field"] == "scorer_options.threads" and fragment in error["message"], error
    assert error["details"][0]["limit"] == limit


async def test_search_threads_is_the_default_of_the_threads_option(in_process, scifact_queries, one_thread_after):
    async with in_process(search_threads=2) as client:
        info = (await client.get("/info")).json()
        exact = (await client.post("/search", json={"query": scifact_queries[1], "k": 10})).json()
        split = (await client.post("/search", json={"query": scifact_queries[1], "k": 10, "scorer": "exact-blocked",
                                                    "scorer_options": {"threads": 2}})).json()
    assert info["settings"]["search_threads"] == 2 and intra_query.max_threads() == 2
    assert info["scorers"]["details"]["exact-blocked"]["options"]["threads"] == {"default": 2, "min": 1, "max": 64}
    assert split["hits"] == exact["hits"] and split["postings_traversed"] == exact["postings_traversed"]


async def test_tier_cut_over_http_is_served_listed_and_422_outside_its_limits(small_index_dir, service_settings,
                                                                             serve_app, scifact_queries, tmp_path):
    """The pruned-rescore part with impact tiers: /info lists `tier_cut` with its limits, a request may set it,
    and a value outside [0, 1] is a 422 naming the field and the limit."""
    import shutil

    from engine.index_format import add_parts
    from engine.scorers import PrunedRescoreScorer
    index_dir = shutil.copytree(small_index_dir, tmp_path / "tiered")
    add_parts(index_dir, PrunedRescoreScorer.part_writers({"n_postings": 40, "tiers": "10,20"}))
    app = create_app(service_settings(index_dir=index_dir), searcher_factory=open_searcher)
    async with serve_app(app) as client:
        info = (await client.get("/info")).json()
        body = {"query": scifact_queries[0], "k": 5, "scorer": "pruned-rescore"}
        answers = [(await client.post("/search", json={**body, "scorer_options": {"tier_cut": cut}})).json()
                   for cut in (0.0, 1.0)]
        bad = await client.post("/search", json={**body, "scorer_options": {"tier_cut": 1.5}})
    assert info["scorers"]["details"]["pruned-rescore"]["options"]["tier_cut"] == {"default": 0.2, "min": 0.0,
                                                                                    "max": 1.0}
    assert all(a["scorer"] == "pruned-rescore" and a["hits"] for a in answers)
    # A cut of 1 walks only the tiers as strong as the query's best posting: never more than every tier.
    assert answers[1]["postings_traversed"] <= answers[0]["postings_traversed"]
    error = assert_error_shape(bad, 422, "validation_error")
    assert error["details"][0]["field"] == "scorer_options.tier_cut" and "must be in [0.0, 1.0]" in error["message"]
    assert error["details"][0]["limit"] == "0.0, 1.0"
