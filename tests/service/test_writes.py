"""The online write path (service/writes.py) through a real uvicorn process on 127.0.0.1: PUT and DELETE
/documents are durable and visible to the next search, atomic per request, and bad input is a 4xx naming the
field with nothing written."""
from __future__ import annotations

import shutil

import httpx
import numpy as np
import pytest

from engine.bm25_writer import part_writer
from engine.index_format import add_parts
from engine.segments import open_searchable
from tests.support.generations import Collection
from tests.support.server import running_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "writes-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
ENV = {"SPLADE_API_KEY": KEY, "SPLADE_WRITES": "true", "SPLADE_MAX_WRITE_DOCUMENTS": "50",
       "SPLADE_RELOAD_POLL_S": "0"}


@pytest.fixture(scope="module")
def served(default_model_dir, tmp_path_factory):
    """A running service with writes on, over a fresh index of generated vectors."""
    collection = Collection(default_model_dir, seed=3, base_documents=500)
    index_dir = tmp_path_factory.mktemp("writes") / "index"
    collection.build(index_dir, metadata=lambda doc_id: {"source": "base", "year": 2000 + len(doc_id) % 20})
    # A BM25 field (empty: the generated documents have no text), so that written texts must get theirs.
    add_parts(index_dir, [part_writer(lambda index: ("" for _ in range(index.num_documents)))])
    with running_service(default_model_dir, index_dir, extra_env=ENV) as base_url:
        yield base_url, collection, index_dir


def search(base_url, collection, k=10) -> dict:
    reply = httpx.post(f"{base_url}/search", json={"vector": collection.query_vector, "k": k}, headers=AUTH, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def put(base_url, documents, headers=AUTH) -> httpx.Response:
    return httpx.put(f"{base_url}/documents", json={"documents": documents}, headers=headers, timeout=120)


def delete(base_url, ids, headers=AUTH) -> httpx.Response:
    return httpx.request("DELETE", f"{base_url}/documents", json={"ids": ids}, headers=headers, timeout=120)


def heavy(collection, boost: float) -> dict[str, float]:
    """A document heavier on the query than any other: it must rank first."""
    vector = collection.random_document(matching=True)
    vector.update({int(t): boost for t in collection.query_ids})
    return collection.tokens(vector)


def test_a_put_is_visible_to_the_next_search_and_a_replace_and_delete_too(served):
    base_url, collection, _ = served
    before = search(base_url, collection)
    reply = put(base_url, [{"id": "new-1", "vector": heavy(collection, 50.0)},
                           {"id": "new-2", "vector": heavy(collection, 40.0)}])
    assert reply.status_code == 200, reply.text
    written = reply.json()
    assert written["added"] == 2 and written["replaced"] == 0
    after = search(base_url, collection)
    assert after["generation"] == written["served_generation"] > before["generation"]
    assert [h["id"] for h in after["hits"][:2]] == ["new-1", "new-2"]

    replaced = put(base_url, [{"id": "new-1", "vector": heavy(collection, 30.0)}]).json()
    assert replaced["replaced"] == 1 and replaced["added"] == 0
    ids = [h["id"] for h in search(base_url, collection)["hits"]]
    assert ids[:2] == ["new-2", "new-1"] and ids.count("new-1") == 1  # the old version is gone

    gone = delete(base_url, ["new-2"])
    assert gone.status_code == 200 and gone.json()["deleted"] == 1
    ids = [h["id"] for h in search(base_url, collection)["hits"]]
    assert "new-2" not in ids and ids[0] == "new-1"


def test_a_text_document_is_encoded_with_the_index_model(served):
    base_url, collection, _ = served
    text = "Vitamin D deficiency is associated with higher mortality in elderly patients."
    reply = put(base_url, [{"id": "text-1", "title": "Vitamin D", "text": text}])
    assert reply.status_code == 200, reply.text
    hits = httpx.post(f"{base_url}/search", json={"query": "vitamin d deficiency mortality", "k": 3,
                                                  "include_text": True}, headers=AUTH, timeout=30).json()["hits"]
    assert hits[0]["id"] == "text-1" and hits[0]["text"] == text
    for mode in ("bm25", "hybrid"):  # the new segment carries the BM25 field too
        reply = httpx.post(f"{base_url}/search", json={"query": "vitamin deficiency", "k": 3, "mode": mode},
                           headers=AUTH, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["hits"][0]["id"] == "text-1", mode


@pytest.mark.parametrize("body, field, status", [
    ({"documents": [{"id": "d", "vector": {"[unused5]": 1.0}}, {"id": "d", "vector": {"the": 1.0}}]},
     "documents[1].id", 422),
    ({"documents": []}, "documents", 422),
    ({"documents": [{"id": f"x{i}", "vector": {"the": 1.0}} for i in range(51)]}, "documents", 422),
    ({"documents": [{"id": "u", "vector": {"no-such-token-xyz": 1.0}}]}, "documents[0].vector", 422),
    ({"documents": [{"id": "b", "vector": {"the": 1.0}, "text": "both"}]}, "documents[0].text", 422),
    ({"documents": [{"id": "n", "vector": {"the": -1.0}}]}, "documents[0].vector.the", 422),
    ({"documents": [{"id": " ", "vector": {"the": 1.0}}]}, "documents[0].id", 422),
])
def test_bad_writes_are_422_naming_the_field_and_write_nothing(served, body, field, status):
    base_url, collection, _ = served
    before = search(base_url, collection, k=100)
    reply = httpx.put(f"{base_url}/documents", json=body, headers=AUTH, timeout=60)
    assert reply.status_code == status, reply.text
    assert field in [d["field"] for d in reply.json()["error"]["details"]], reply.text
    after = search(base_url, collection, k=100)
    assert after["generation"] == before["generation"] and after["hits"] == before["hits"]


def test_unknown_ids_delete_nothing_and_a_wrong_key_is_401(served):
    base_url, collection, _ = served
    known = search(base_url, collection)["hits"][0]["id"]
    reply = delete(base_url, [known, "no-such-id"])
    assert reply.status_code == 422 and reply.json()["error"]["details"][0]["field"] == "ids[1]"
    assert search(base_url, collection)["hits"][0]["id"] == known  # the known id was not deleted
    assert delete(base_url, [known, known]).status_code == 422
    assert delete(base_url, []).status_code == 422
    assert put(base_url, [{"id": "k", "vector": {"the": 1.0}}], headers={"X-API-Key": "wrong"}).status_code == 401
    assert delete(base_url, [known], headers={}).status_code == 401


def test_the_index_on_disk_holds_every_acknowledged_write(served):
    base_url, collection, index_dir = served
    reply = put(base_url, [{"id": f"disk-{i}", "vector": heavy(collection, 5.0 + i)} for i in range(5)])
    assert reply.status_code == 200
    generation = open_searchable(index_dir)
    try:
        ids = set(generation.external_ids(np.arange(generation.num_slots)))
        assert {f"disk-{i}" for i in range(5)} <= ids
    finally:
        generation.close()


def test_writes_need_an_api_key_setting():
    from service.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="SPLADE_API_KEY"):
        load_settings(writes=True, api_key=None)


def test_written_metadata_is_filterable_and_a_wrong_type_is_422(served):
    base_url, collection, _ = served
    reply = put(base_url, [{"id": "meta-1", "vector": heavy(collection, 60.0), "metadata": {"source": "web",
                                                                                       "year": 2024}},
                           {"id": "meta-2", "vector": heavy(collection, 55.0), "metadata": {"source": "base"}}])
    assert reply.status_code == 200, reply.text
    body = {"vector": collection.query_vector, "k": 5}
    web = httpx.post(f"{base_url}/search", json={**body, "filter": {"source": "web"}}, headers=AUTH, timeout=30)
    recent = httpx.post(f"{base_url}/search", json={**body, "filter": {"year": {"gte": 2024}}}, headers=AUTH,
                        timeout=30)
    base = httpx.post(f"{base_url}/search", json={**body, "filter": {"source": "base"}}, headers=AUTH, timeout=30)
    assert [h["id"] for h in web.json()["hits"]] == ["meta-1"]
    assert [h["id"] for h in recent.json()["hits"]] == ["meta-1"]
    assert base.json()["hits"][0]["id"] == "meta-2" and len(base.json()["hits"]) == 5

    wrong = put(base_url, [{"id": "meta-3", "vector": heavy(collection, 1.0), "metadata": {"year": "recent"}}])
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"][0]["field"] == "documents[0].metadata.year"
    assert "meta-3" not in [h["id"] for h in search(base_url, collection, k=1000)["hits"]]
