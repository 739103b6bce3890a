"""A passage index served over HTTP (real uvicorn on 127.0.0.1): each hit names the passage that matched
(`passage`: index and character offsets), hybrid hits found by SPLADE too, and what a passage index cannot do
(two-phase rescoring) is a 422 naming the field."""
from __future__ import annotations

import httpx
import pytest

from index_builder.bm25_part import Bm25PartBuilder
from index_builder.build import EncodeSettings, build_index, load_encoder
from index_builder.passages import PassageSettings
from splade_client import Client
from tests.index_builder.test_passages import EVIDENCE, LONG, QUERY, SHORT, encoder_text, write_corpus
from tests.support.server import running_service


@pytest.fixture(scope="module")
def passage_index_dir(tmp_path_factory, default_model_dir):
    tmp = tmp_path_factory.mktemp("passage_api")
    corpus = write_corpus(tmp / "corpus.jsonl", [LONG, *SHORT])
    build_index(corpus, tmp / "index", None, EncodeSettings(progress=False),
                encoder=load_encoder(default_model_dir, max_length=256), passages=PassageSettings(128, 96),
                bm25=Bm25PartBuilder(1.5, 0.75))
    return tmp / "index"


def test_hits_name_the_passage_that_matched(passage_index_dir, default_model_dir):
    with running_service(default_model_dir, passage_index_dir) as base_url:
        body = httpx.post(f"{base_url}/search", json={"query": QUERY, "k": 3, "include_text": True}).json()
        top = body["hits"][0]
        assert top["id"] == "long" and set(top["passage"]) == {"index", "start", "end"}
        assert all(isinstance(v, int) for v in top["passage"].values()) and top["passage"]["index"] > 0
        shown = (top["title"] + " " + top["text"]).strip()[top["passage"]["start"]:top["passage"]["end"]]
        assert EVIDENCE in shown

        short = httpx.post(f"{base_url}/search", json={"query": "bread flour yeast", "k": 1}).json()["hits"][0]
        assert short["id"] == "bread" and short["passage"] == {"index": 0, "start": 0,
                                                               "end": len(encoder_text(SHORT[1]))}

        hybrid = httpx.post(f"{base_url}/search", json={"query": QUERY, "k": 3, "mode": "hybrid",
                                                        "explain": True}).json()
        assert "hits" in hybrid, hybrid
        assert hybrid["hits"][0]["id"] == "long" and hybrid["hits"][0]["passage"] == top["passage"]
        assert hybrid["hits"][0]["subqueries"]["splade"]["rank"] == 1

        refused = httpx.post(f"{base_url}/search", json={"query": QUERY, "two_phase_ratio": 0.3})
        assert refused.status_code == 422
        assert refused.json()["error"]["details"][0]["field"] == "two_phase_ratio"

        info = httpx.get(f"{base_url}/info").json()
        assert info["index"]["parts"]["passages"]["params"]["passage_tokens"] == 128

        with Client(base_url) as client:
            assert client.search(QUERY, k=1).hits[0].passage == top["passage"]
