"""Metadata filters over HTTP, end to end: a real index built with metadata by the builder, a real uvicorn
service on 127.0.0.1, the Python client. Filtered answers equal the offline Searcher's and pass the filter;
every bad filter (unindexed field, wrong type, malformed, over a limit) is a 422 naming its path, never a 500;
/info shows the schema and the limits."""
from __future__ import annotations

import json

import httpx
import pytest

from engine import Searcher
from engine.index_format import open_index
from index_builder.bm25_part import Bm25PartBuilder
from index_builder.build import EncodeSettings, build_index, load_encoder
from models.runtime import load_query_encoder
from splade_client import Client
from splade_client.errors import ApiError
from tests.engine.test_filters import matches
from tests.support.server import running_service

LIMITS = {"SPLADE_FILTER_MAX_DEPTH": "3", "SPLADE_FILTER_MAX_CLAUSES": "6", "SPLADE_FILTER_MAX_IN_VALUES": "4"}
QUERY = "vitamin D and bone density"


def with_metadata(position: int) -> dict:
    return {"lang": ["en", "de", "fr"][position % 3], "year": 2000 + position % 23,
            "tags": [["bone"], ["cell", "gene"], []][position % 3], "reviewed": position % 2 == 0}


@pytest.fixture(scope="module")
def filtered_index(tmp_path_factory, small_corpus, default_model_dir):
    records = [json.loads(line) for line in small_corpus.read_text(encoding="utf-8").splitlines()[:150]]
    for position, record in enumerate(records):
        record["metadata"] = with_metadata(position)
    corpus = tmp_path_factory.mktemp("filtered_corpus") / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = corpus.parent / "index"
    build_index(corpus, out, None, EncodeSettings(progress=False, max_length=64),
                encoder=load_encoder(default_model_dir, max_length=64), bm25=Bm25PartBuilder())
    return out, {r["_id"]: r["metadata"] for r in records}


@pytest.fixture(scope="module")
def service(filtered_index, default_model_dir):
    index_dir, _ = filtered_index
    env = {"SPLADE_DEVICE": "cpu", "SPLADE_MAX_QUERY_TERMS": "64", **LIMITS}
    with running_service(default_model_dir, index_dir, env) as base_url:
        yield base_url


def test_filtered_search_passes_the_filter_and_equals_the_offline_searcher(service, filtered_index,
                                                                          default_model_dir):
    index_dir, metadata = filtered_index
    offline = Searcher(open_index(index_dir), load_query_encoder(default_model_dir), max_query_terms=64)
    cases = [({"lang": "en"}, 10), ({"and": [{"tags": "gene"}, {"year": {"gte": 2010, "lt": 2020}}]}, 5),
             ({"or": [{"reviewed": False}, {"lang": {"in": ["fr"]}}]}, 20), ({"year": 2001, "lang": "de"}, 10)]
    with Client(service) as client:
        for filter_json, k in cases:
            for mode in ("splade", "bm25", "hybrid"):
                if mode == "splade":  # through the client's filter=
                    ids = [hit.id for hit in client.search(QUERY, k=k, filter=filter_json).hits]
                else:
                    response = httpx.post(f"{service}/search", json={"query": QUERY, "k": k, "mode": mode,
                                                                     "filter": filter_json}, timeout=30)
                    assert response.status_code == 200, response.text
                    ids = [hit["id"] for hit in response.json()["hits"]]
                assert all(matches(filter_json, metadata[i]) for i in ids), (filter_json, mode)
                assert ids or mode == "bm25"  # BM25 finds nothing where no allowed text has a query word
                want = offline.search(QUERY, k=k, filter=filter_json, mode=mode)
                assert ids == [hit.id for hit in want.hits], (filter_json, mode)
        unfiltered = client.search(QUERY, k=10)
        assert [h.id for h in unfiltered.hits] != [h.id for h in client.search(QUERY, k=10, filter=cases[0][0]).hits]


def test_info_shows_the_schema_and_limits(service):
    with Client(service) as client:
        info = client.info()
    assert info.metadata["schema"] == {"lang": "keyword", "reviewed": "boolean", "tags": "keyword_list",
                                       "year": "integer"}
    assert info.metadata["limits"] == {"max_depth": 3, "max_clauses": 6, "max_in_values": 4}


@pytest.mark.parametrize("filter_json, field, limit", [
    ({"publisher": "x"}, "filter.publisher", "lang, reviewed, tags, year"),
    ({"and": [{"lang": "en"}, {"year": {"gte": "2019"}}]}, "filter.and[1].year.gte", None),
    ({"year": "2019"}, "filter.year", "integer"),
    ({"tags": {"in": ["bone", 3]}}, "filter.tags.in[1]", "keyword_list"),
    ({"lang": {"gt": 2}}, "filter.lang.gt", "integer, float"),
    ({"year": {"near": 2019}}, "filter.year.near", None),
    ({"year": [2019, 2020]}, "filter.year", None),
    ({"or": []}, "filter.or", None),
    ({"lang": {"in": ["a", "b", "c", "d", "e"]}}, "filter.lang.in", 4),
    ({"not": {"not": {"not": {"not": {"lang": "en"}}}}}, "filter.not.not.not.not", 3),
    ({"and": [{"lang": "en"}] * 7}, "filter.and[6].lang", 6),
])
def test_bad_filters_are_422_naming_the_path(service, filter_json, field, limit):
    response = httpx.post(f"{service}/search", json={"query": QUERY, "filter": filter_json}, timeout=30)
    assert response.status_code == 422, response.text
    detail = response.json()["error"]["details"][0]
    assert detail["field"] == field
    if limit is not None:
        assert detail["limit"] == limit


def test_non_object_filters_and_batch_paths(service):
    for bad in ("lang", ["lang"], 5):
        response = httpx.post(f"{service}/search", json={"query": QUERY, "filter": bad}, timeout=30)
        assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "filter"
    body = {"queries": [{"query": QUERY, "filter": {"lang": "en"}}, {"query": QUERY, "filter": {"year": "x"}}]}
    response = httpx.post(f"{service}/search/batch", json=body, timeout=30)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "queries[1].filter.year"
    with Client(service) as client, pytest.raises(ApiError) as caught:
        client.search(QUERY, filter={"nope": 1})
    assert caught.value.status_code == 422 and caught.value.field == "filter.nope"
