"""Vocabularies beyond 65,536 terms end to end: a 151,936-term Qwen3 model (built and exported in the test)
indexes a small corpus through `python -m index_builder build`, a real `python -m service` (uvicorn on
127.0.0.1) serves it, and a text query and a vector query naming a token whose id is above 65,535 find the
documents that contain it; /info reports the vocabulary size."""
from __future__ import annotations

import json

import httpx
import pytest
from tokenizers import Tokenizer

from models.export import export_artifact
from tests.conftest import run_module
from tests.models.builders import QWEN3_VOCAB, tiny_qwen3
from tests.support.server import running_service

FILLER = ("the index of the query document term weight model memory thread batch token cell gene protein "
          "vaccine cancer python file line read sparse retrieval").split()


def high_id_words(tokenizer_path, count: int) -> dict[str, int]:
    """Whole-word tokens with ids above 65,535 that the tokenizer maps to exactly that one id."""
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    words = {}
    for term_id in range(100_000, QWEN3_VOCAB, 7919):
        token = tokenizer.id_to_token(term_id)
        if token.isalpha() and tokenizer.encode(token).ids == [term_id]:
            words[token] = term_id
        if len(words) == count:
            return words
    raise AssertionError("no whole-word high-id tokens found")


@pytest.fixture(scope="module")
def large_vocab_service(tmp_path_factory):
    root = tmp_path_factory.mktemp("large_vocab_e2e")
    checkpoint = tiny_qwen3(root / "checkpoint", seed=31, lexical=True)
    artifact = root / "artifact"
    export_artifact("siamese", artifact, model=str(checkpoint), query_max_length=16, doc_max_length=48)
    (rare, rare_id), (other, _) = high_id_words(artifact / "tokenizer.json", 2).items()
    corpus = root / "corpus.jsonl"
    containing = {"d03", "d07", "d11"}
    with open(corpus, "w", encoding="utf-8") as handle:
        for number in range(16):
            doc_id = f"d{number:02d}"
            words = [FILLER[(number * 5 + i) % len(FILLER)] for i in range(12)]
            if doc_id in containing:
                words.insert(number % 12, rare)
            if number in (1, 2):
                words.insert(3, other)
            handle.write(json.dumps({"id": doc_id, "text": " ".join(words)}) + "\n")
    index = root / "index"
    run_module("index_builder", "build", "--model", str(artifact), "--corpus", str(corpus),
               "--out", str(index), "--doc-max-terms", "256", "--no-progress", timeout=600)
    env = {"SPLADE_DEVICE": "cpu", "SPLADE_INTRA_OP_THREADS": "1", "SPLADE_LOG_LEVEL": "warning"}
    with running_service(artifact, index, env) as base_url:
        yield {"url": base_url, "rare": rare, "rare_id": rare_id, "containing": containing}


def test_vector_query_on_a_term_id_above_16_bits(large_vocab_service):
    service = large_vocab_service
    assert service["rare_id"] > 65_535
    with httpx.Client(base_url=service["url"], timeout=60) as client:
        response = client.post("/search", json={"vector": {service["rare"]: 1.0}, "k": 10})
    assert response.status_code == 200, response.text
    # Only documents with a posting on that term score above zero: exactly the ones containing the word.
    assert {hit["id"] for hit in response.json()["hits"]} == service["containing"]


def test_text_query_finds_the_documents_containing_the_word(large_vocab_service):
    service = large_vocab_service
    with httpx.Client(base_url=service["url"], timeout=60) as client:
        response = client.post("/search", json={"query": service["rare"], "k": 3, "explain": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert service["rare"] in [term for term, _ in body["query_terms"]]
    assert {hit["id"] for hit in body["hits"]} == service["containing"]


def test_info_reports_the_vocabulary_size(large_vocab_service):
    with httpx.Client(base_url=large_vocab_service["url"], timeout=60) as client:
        info = client.get("/info").json()
    assert info["model"]["vocab_size"] == QWEN3_VOCAB
    assert info["index"]["vocab_size"] == QWEN3_VOCAB
    assert info["model"]["source"]["document"]["encoder"]["backbone"] == "causal-lm"
