"""The client against a real uvicorn service on 127.0.0.1: its typed results are exactly what the HTTP API
answers (httpx straight to the routes is the reference), server errors become exceptions naming the field and
the limit, 4xx are not retried, and the async client answers what the sync one does."""
from __future__ import annotations

import asyncio

import httpx
import pytest

from splade_client import (
    AsyncClient,
    Client,
    InvalidRequestError,
    RetryPolicy,
    SearchResult,
    SpladeConnectionError,
)
from tests.client.conftest import metric
from tests.support.server import free_port


def without_timings(payload: dict) -> dict:
    """Timings differ between any two calls; everything else must match."""
    payload = {key: value for key, value in payload.items() if key != "timings_ms"}
    if "results" in payload:
        payload["results"] = [without_timings(result) for result in payload["results"]]
    return payload


def as_api_json(result) -> dict:
    """What the typed result holds, in the API's JSON form (fields the server did not send stay out)."""
    return without_timings(result.model_dump(mode="json", exclude_unset=True))


SEARCHES = [
    dict(k=5),
    dict(k=3, include_text=True),
    dict(k=4, explain=True, query_max_terms=12),
]


def test_search_results_equal_the_http_api(service_url, queries):
    with Client(service_url) as client, httpx.Client(base_url=service_url, timeout=30) as http:
        for text, options in zip(queries, SEARCHES * 3):
            result = client.search(text, **options)
            reference = http.post("/search", json={"query": text, **options})
            assert reference.status_code == 200, reference.text
            assert isinstance(result, SearchResult)
            assert as_api_json(result) == without_timings(reference.json())
            assert len(result.hits) == options["k"]
        vector = {"vitamin": 1.2, "fracture": 0.8}
        result = client.search(vector=vector, k=3, explain=True)
        reference = http.post("/search", json={"vector": vector, "k": 3, "explain": True}).json()
    assert as_api_json(result) == without_timings(reference)
    assert result.query_terms[0][0] == "vitamin" and set(result.hits[0].contributions) <= set(vector)
    assert result.timings_ms.total > 0


def test_search_batch_equals_the_http_api_and_per_query_options_win(service_url, queries):
    batch = [queries[0], {"query": queries[1], "k": 2}, {"vector": {"protein": 1.0}, "include_text": True}]
    with Client(service_url) as client:
        result = client.search_batch(batch, k=4)
    body = {"queries": [{"query": queries[0], "k": 4}, {"query": queries[1], "k": 2},
                        {"vector": {"protein": 1.0}, "k": 4, "include_text": True}]}
    reference = httpx.post(f"{service_url}/search/batch", json=body, timeout=30)
    assert reference.status_code == 200, reference.text
    assert as_api_json(result) == without_timings(reference.json())
    assert [len(r.hits) for r in result.results] == [4, 2, 4]
    assert result.results[2].hits[0].text  # include_text reached the third query only
    assert result.results[0].hits[0].text is None


def test_info_health_and_ready_equal_the_http_api(service_url):
    with Client(service_url) as client:
        info = client.info()
        assert client.health().status == "ok"
        assert client.ready() is True
    reference = httpx.get(f"{service_url}/info", timeout=30).json()
    assert info.model_dump(mode="json") == reference
    assert info.provider == "CPUExecutionProvider"
    assert info.settings["max_k"] == 1000 and info.model["vocab_size"] == 30522 and info.index


def test_a_422_becomes_an_exception_naming_the_field_and_the_limit_and_is_not_retried(service_url, queries):
    rejected_before = metric(service_url, "splade_request_duration_seconds_count",
                             {"endpoint": "/search", "status": "422"})
    with Client(service_url, retry=RetryPolicy(max_attempts=5)) as client:
        with pytest.raises(InvalidRequestError) as caught:
            client.search(queries[0], k=5000)
        with pytest.raises(InvalidRequestError) as in_batch:
            client.search_batch([queries[0], {"query": queries[1], "query_max_terms": 65}])
        with pytest.raises(InvalidRequestError) as unknown_token:
            client.search(vector={"zzzqqqxxx": 1.0})
    error = caught.value
    assert (error.status_code, error.error_type, error.field, error.limit) == (422, "validation_error", "k", 1000)
    assert "k" in str(error) and "1000" in str(error)
    assert error.attempts == 1
    assert (in_batch.value.field, in_batch.value.limit) == ("queries[1].query_max_terms", 64)
    assert "queries[1].query_max_terms: limit 64" in str(in_batch.value)
    assert unknown_token.value.field.startswith("vector") and "zzzqqqxxx" in str(unknown_token.value)
    # One request each: the server counted exactly the two /search 422s, none retried.
    rejected_after = metric(service_url, "splade_request_duration_seconds_count",
                            {"endpoint": "/search", "status": "422"})
    assert rejected_after - rejected_before == 2


def test_a_scorer_name_is_passed_through_to_the_server(service_url, queries):
    # The server decides what a scorer name means: one it does not offer is a 422 naming the field `scorer`
    # (today's server knows no `scorer` field at all and says so the same way).
    with Client(service_url) as client, pytest.raises(InvalidRequestError) as caught:
        client.search(queries[0], scorer="no-such-scorer")
    assert caught.value.field == "scorer"


def test_a_refused_connection_is_retried_within_the_attempt_bound_then_raised():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(url, retry=RetryPolicy(max_attempts=3, backoff_initial_s=0.01)) as client:
        with pytest.raises(SpladeConnectionError) as caught:
            client.search("anything")
        with pytest.raises(SpladeConnectionError):
            client.ready()  # "not reachable" is not "not ready"
        with pytest.raises(TimeoutError, match="not ready within"):
            client.wait_until_ready(timeout_s=0.3, poll_s=0.05)
    assert caught.value.attempts == 3
    assert "gave up after 3 attempts" in str(caught.value) and "POST /search" in str(caught.value)


def test_the_async_client_gives_the_same_results_as_the_sync_one(service_url, queries):
    batch = [queries[3], {"query": queries[4], "k": 2, "explain": True}]

    async def with_async_client():
        async with AsyncClient(service_url) as client:
            singles = [await client.search(text, **options) for text, options in zip(queries, SEARCHES * 3)]
            vector = await client.search(vector={"vitamin": 1.0}, k=3, include_text=True)
            return singles, vector, await client.search_batch(batch, k=3), await client.info(), await client.ready()

    singles, vector, batched, info, ready = asyncio.run(with_async_client())
    with Client(service_url) as client:
        assert [as_api_json(r) for r in singles] == [
            as_api_json(client.search(text, **options)) for text, options in zip(queries, SEARCHES * 3)
        ]
        assert as_api_json(vector) == as_api_json(client.search(vector={"vitamin": 1.0}, k=3, include_text=True))
        assert as_api_json(batched) == as_api_json(client.search_batch(batch, k=3))
        assert info == client.info()
    assert ready is True


def test_the_async_client_raises_the_same_exception(service_url, queries):
    async def bad_request():
        async with AsyncClient(service_url) as client:
            await client.search(queries[0], k=0)

    with pytest.raises(InvalidRequestError) as caught:
        asyncio.run(bad_request())
    assert (caught.value.field, caught.value.limit) == ("k", 1)
